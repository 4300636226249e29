"""A fake CDI (Containerized Data Importer) inside the emulator, as far as vmbmc uses it.

    cdi = install_cdi(emulator)

registers ``datavolumes.cdi.kubevirt.io`` (version ``v1beta1``, short names ``dv``/``dvs``) and adds an
import controller. For a DataVolume with ``spec.source.http.url`` it does what CDI's controller and
importer pod do, in the order CDI reports it:

- creates the PersistentVolumeClaim of the same name (owned by the DataVolume, so it goes with it) and
  sets ``status.phase: ImportScheduled``;
- fetches the URL over HTTP(S) for real (a loopback server in tests), ``phase: ImportInProgress`` with
  ``status.progress`` ("42.00%") while the body arrives;
- ends ``Succeeded`` (``progress: 100.0%``, conditions Bound/Ready True), or, when the source answers
  with an error or cannot be reached, ``Failed`` with the ``Running`` condition False, reason ``Error`` and
  CDI's importer message (``Unable to connect to http data source: expected status code 200, got 404.
  Status: 404 Not Found``). Real CDI restarts the importer pod and keeps the phase ``ImportInProgress``
  with a growing ``status.restartCount``; this emulator records the first failure as ``Failed`` (CDI
  ≤ 1.2x did so too). Clients must accept both (vmbmc does: `vmbmc.kubevirt.media.import_state`).

The bytes are counted, not kept: nothing is written to disk. A ``spec.source.blank`` DataVolume gets its
PVC and ends ``Succeeded`` at once (CDI writes an empty image). Other sources (registry, pvc...) stay
``Pending`` with a condition saying the emulator does not import them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import aiohttp

from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.registry import ResourceType

if TYPE_CHECKING:
    from vmbmc_devcluster.emulator.emulator import Emulator

log = logging.getLogger("vmbmc.emulator.cdi")

GROUP, VERSION = "cdi.kubevirt.io", "v1beta1"
IMPORT_TIMEOUT = 300.0  # seconds: a whole import, as a bound on every fetch
CONNECT_TIMEOUT = 10.0
CHUNK = 64 * 1024
_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
DV_RT = ResourceType(
    group=GROUP,
    version=VERSION,
    plural="datavolumes",
    kind="DataVolume",
    namespaced=True,
    singular="datavolume",
    short_names=("dv", "dvs"),
    categories=("all",),
    subresources=frozenset({"status"}),
    schema={
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _PRESERVE,
            "status": _PRESERVE,
        },
    },
    custom=True,
    printer_columns=(
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restartCount"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(ctype: str, status: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    now = _now()
    return {
        "type": ctype,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


def _conditions(bound: bool, ready: bool, running: bool, reason: str = "", message: str = "") -> list[dict]:
    return [
        _condition("Bound", bound, "Bound" if bound else "Pending"),
        _condition("Ready", ready),
        _condition("Running", running, reason, message),
    ]


def _storage_request(dv: dict) -> str:
    spec = dv.get("spec") or {}
    for part in ("storage", "pvc"):
        size = (((spec.get(part) or {}).get("resources") or {}).get("requests") or {}).get("storage")
        if size:
            return str(size)
    return "1Gi"


class Cdi:
    """CDI's DataVolume controller and its HTTP importer."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.store = emulator.store
        self._imports: dict[str, asyncio.Task[None]] = {}  # DataVolume uid → its import

    async def run(self, emulator: Emulator) -> None:
        sub = self.store.subscribe(DV_RT)
        try:
            existing, _ = self.store.list(DV_RT)
            for dv in existing:
                self._sync(dv)
            async for event in sub:
                uid = (event.object.get("metadata") or {}).get("uid", "")
                if event.type == "DELETED":
                    task = self._imports.pop(uid, None)
                    if task is not None:
                        task.cancel()
                    continue
                self._sync(event.object)
        finally:
            sub.close()
            for task in self._imports.values():
                task.cancel()
            self._imports.clear()

    def _sync(self, dv: dict) -> None:
        meta = dv.get("metadata") or {}
        uid = meta.get("uid", "")
        if meta.get("deletionTimestamp") or uid in self._imports or (dv.get("status") or {}).get("phase"):
            return
        source = (dv.get("spec") or {}).get("source") or {}
        url = (source.get("http") or {}).get("url")
        if "blank" in source:
            self._blank(dv)
            return
        if not url:
            self._set_status(dv, {"phase": "Pending", "conditions": _conditions(
                False, False, False, "Unsupported", "the emulator imports only spec.source.http and blank")})
            return
        self._imports[uid] = asyncio.get_running_loop().create_task(self._import(dv, str(url)))

    def _blank(self, dv: dict) -> None:
        """A blank disk of the requested size: the PVC, then Succeeded (CDI's blank importer only writes
        an empty image, which this emulator does not keep)."""
        self._create_pvc(dv)
        self._set_status(dv, {"phase": "Succeeded", "progress": "100.0%", "restartCount": 0,
                              "claimName": dv["metadata"]["name"],
                              "conditions": _conditions(True, True, False, "Completed")})

    def _set_status(self, dv: dict, status: dict[str, Any]) -> bool:
        meta = dv["metadata"]

        def apply(o: dict) -> None:
            if o["metadata"].get("uid") == meta["uid"]:
                o["status"] = {**(o.get("status") or {}), **status}

        try:
            return self.store.mutate(DV_RT, meta["namespace"], meta["name"], apply) is not None
        except ApiError as err:
            if err.code == 404:
                return False
            raise

    def _create_pvc(self, dv: dict) -> None:
        meta = dv["metadata"]
        pvc_rt = self.emulator.registry.get("", "v1", "persistentvolumeclaims")
        assert pvc_rt is not None
        pvc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "labels": {"app": "containerized-data-importer", "app.kubernetes.io/component": "storage"},
                "annotations": {"cdi.kubevirt.io/storage.import.endpoint": self._url(dv)},
                "ownerReferences": [{
                    "apiVersion": DV_RT.api_version, "kind": "DataVolume", "name": meta["name"],
                    "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
                }],
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": _storage_request(dv)}},
                "volumeMode": "Filesystem",
            },
        }  # bound by the cluster's provisioner (vmbmc.emulator.volumes), as CDI's PVCs are
        try:
            self.store.create(pvc_rt, pvc, meta["namespace"])
        except ApiError as err:
            if err.code != 409:
                raise

    @staticmethod
    def _url(dv: dict) -> str:
        return str((((dv.get("spec") or {}).get("source") or {}).get("http") or {}).get("url") or "")

    async def _import(self, dv: dict, url: str) -> None:
        meta = dv["metadata"]
        where = {"namespace": meta["namespace"], "datavolume": meta["name"], "url": url}
        try:
            self._create_pvc(dv)
            if not self._set_status(dv, {"phase": "ImportScheduled", "progress": "N/A", "restartCount": 0,
                                         "claimName": meta["name"],
                                         "conditions": _conditions(True, False, False, "Pending")}):
                return
            await asyncio.sleep(0)  # let watchers see ImportScheduled before the importer runs
            self._set_status(dv, {"phase": "ImportInProgress", "progress": "0.00%",
                                  "conditions": _conditions(True, False, True, "Pod is running")})
            error = await asyncio.wait_for(self._fetch(dv, url), IMPORT_TIMEOUT)
        except TimeoutError:
            error = f"Unable to transfer source data: timed out after {IMPORT_TIMEOUT:.0f}s"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the importer pod dies; CDI reports its last words
            error = f"Unable to transfer source data: {exc}"
        finally:
            self._imports.pop(meta["uid"], None)
        if error:
            log.info("import failed", extra={**where, "error": error})
            self._set_status(dv, {"phase": "Failed", "restartCount": 1,
                                  "conditions": _conditions(True, False, False, "Error", error)})
            return
        log.info("import succeeded", extra=where)
        self._set_status(dv, {"phase": "Succeeded", "progress": "100.0%",
                              "conditions": _conditions(True, True, False, "Completed")})

    async def _fetch(self, dv: dict, url: str) -> str:
        """Fetch `url` as CDI's importer does; return "" on success, else CDI's error message."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=CONNECT_TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                if resp.status != 200:
                    return (
                        "Unable to connect to http data source: expected status code 200, got "
                        f"{resp.status}. Status: {resp.status} {resp.reason or ''}".rstrip()
                    )
                total = resp.content_length or 0
                done = 0
                last = -1.0
                async for chunk in resp.content.iter_chunked(CHUNK):
                    done += len(chunk)
                    pct = 100.0 * done / total if total else 0.0
                    if pct - last >= 5.0:  # CDI reports progress from the importer's metrics, not per byte
                        last = pct
                        self._set_status(dv, {"progress": f"{min(pct, 100.0):.2f}%"})
                return ""
        except aiohttp.ClientError as exc:
            return f"Unable to connect to http data source: {exc}"


def install_cdi(emulator: Emulator) -> Cdi:
    """Register the DataVolume type on ``emulator`` and add the import controller."""
    cdi = Cdi(emulator)
    emulator.registry.register(DV_RT)
    emulator.add_controller(cdi)
    return cdi
