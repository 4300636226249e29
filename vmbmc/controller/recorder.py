"""Writes the power history of each BMC: Events, `status.powerHistory`, `powerState` and two conditions.

One `PowerRecorder` per controller process. `observe()` is called on every change of a BMC, its VM or its
VMI; the pure `vmbmc.controller.transitions` decides what happened, this module writes it, exactly once:

1. Events first, with names derived from the transition id (`<bmc>.<id>`, `<bmc>.<id>.vm`): a 409 on
   create means an earlier attempt (or an earlier controller) already wrote it.
2. Then the status (merge patch on the status subresource, guarded by resourceVersion, re-read on 409),
   adding only history entries whose id (or alias) is not there yet.
3. Last, the marker annotation `vmbmc.kubevirt.io/last-observed`: the last settled state and the VMI it
   refers to, so a restarted controller knows what it saw before (KubeVirt keeps no trace of a VMI that is
   gone). A crash between the steps repeats them on the next observation; steps 1 and 2 find their work
   done. The prefix is the one kopf's storages use, so kopf's diff ignores the annotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from vmbmc.controller import transitions as tr
from vmbmc.kubevirt.client import MERGE_PATCH, ApiClient, ApiError
from vmbmc.kubevirt.records import BMC_GROUP, BMC_KIND, BMC_VERSION, bmc_path, now_rfc3339, vm_path

log = logging.getLogger(__name__)

COMPONENT = "vmbmc-controller"
MARKER_ANNOTATION = "vmbmc.kubevirt.io/last-observed"
MAX_HISTORY = 20
CONFLICT_RETRIES = 8
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # after a failed observation; the last one repeats

Key = tuple[str, str]


def _vm_ref(bmc: dict[str, Any]) -> tuple[str, str] | None:
    """The BMC's VM: spec.virtualMachineRef (namespace defaults to the BMC's) or the seed's fields."""
    spec = bmc.get("spec") or {}
    ref = spec.get("virtualMachineRef") or {}
    own = (bmc.get("metadata") or {}).get("namespace") or ""
    name = ref.get("name") or spec.get("vmName")
    if not name:
        return None
    return str(ref.get("namespace") or spec.get("vmNamespace") or own), str(name)


class PowerRecorder:
    def __init__(self, api: ApiClient, instance: str) -> None:
        self.api = api
        self.instance = instance  # reportingInstance: the controller's pod name
        self._locks: dict[Key, asyncio.Lock] = {}
        # What was last seen per BMC, with the BMC's UID (a BMC deleted and created again starts afresh).
        self._memory: dict[Key, tuple[str, tr.Memory | None]] = {}
        self._markers: dict[Key, str] = {}  # the marker we last wrote
        self._retries: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- interface -------------------------------------------------------------------------------
    async def observe(
        self, bmc: dict[str, Any], vm: dict[str, Any] | None, vmi: dict[str, Any] | None
    ) -> None:
        """Record what changed since the last observation of this BMC. Idempotent; never raises: on an
        error it logs and observes again later (with fresh objects)."""
        meta = bmc.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            self._cancel_retry(key)
            try:
                await self._observe(key, bmc, vm, vmi)
            except Exception as err:  # never raise into the caller's handler: retry on our own
                attempt = self._failures.get(key, 0)
                self._failures[key] = attempt + 1
                log.warning(
                    "could not record the power history; retrying",
                    extra={"bmc": f"{key[0]}/{key[1]}", "error": str(err), "attempt": attempt + 1},
                    exc_info=not isinstance(err, ApiError),
                )
                if key in self._locks:  # not forgotten meanwhile
                    self._schedule_retry(key, RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            else:
                self._failures.pop(key, None)

    def forget(self, bmc_namespace: str, bmc_name: str) -> None:
        """The BMC is gone: drop what we remember of it."""
        key = (bmc_namespace, bmc_name)
        self._cancel_retry(key)
        self._memory.pop(key, None)
        self._markers.pop(key, None)
        self._failures.pop(key, None)
        self._locks.pop(key, None)

    async def close(self) -> None:
        """Stop pending retries (for a clean shutdown and for tests)."""
        for key in list(self._retries):
            self._cancel_retry(key)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- one observation -------------------------------------------------------------------------
    async def _observe(
        self, key: Key, bmc: dict[str, Any], vm: dict[str, Any] | None, vmi: dict[str, Any] | None
    ) -> None:
        uid = str((bmc.get("metadata") or {}).get("uid") or "")
        now = now_rfc3339()
        observed = tr.observe(vm, vmi)
        remembered = self._memory.get(key)
        if remembered is not None and remembered[0] == uid:
            memory = remembered[1]
        else:
            memory = tr.Memory.from_json(_annotations(bmc).get(MARKER_ANNOTATION))
        new_memory, found = tr.step(memory, observed, now)
        if found:
            # The caller's copy of the BMC may lag (an index or a watch of another resource than the one
            # that changed): read it again, so the kbmc's newest request records take part in attribution
            # and the history check sees what is stored.
            fresh = await self._get(bmc_path(key[0], key[1]))
            if fresh is None or str(fresh["metadata"].get("uid") or "") != uid:
                return  # deleted (or replaced): forget() follows
            bmc = fresh
        status = bmc.get("status") or {}
        history = list(status.get("powerHistory") or [])
        found = tr.unrecorded(found, history)
        entries = tr.attribute(found, list(status.get("requests") or []), history)
        for transition, entry in zip(found, entries, strict=True):
            await self._emit(bmc, vm, transition, entry)
        await self._write_status(bmc, observed, found, entries, now)
        if new_memory is not None:
            await self._write_marker(key, bmc, new_memory)
        self._memory[key] = (uid, new_memory)
        for transition, entry in zip(found, entries, strict=True):
            log.info(
                "power transition recorded",
                extra={
                    "bmc": f"{key[0]}/{key[1]}",
                    "reason": transition.reason,
                    "id": transition.id,
                    "from": transition.from_state,
                    "to": transition.to_state,
                    "cause": entry["cause"],
                    "request_id": entry.get("requestId"),
                },
            )

    # --- Events ----------------------------------------------------------------------------------
    async def _emit(
        self, bmc: dict[str, Any], vm: dict[str, Any] | None, t: tr.Transition, entry: dict[str, Any]
    ) -> None:
        meta = bmc["metadata"]
        on_bmc = {
            "apiVersion": f"{BMC_GROUP}/{BMC_VERSION}",
            "kind": BMC_KIND,
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta.get("uid"),
        }
        await self._create_event(f"{meta['name']}.{t.id}", on_bmc, t, entry["message"])
        if vm is not None:
            vm_meta = vm["metadata"]
            on_vm = {
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachine",
                "namespace": vm_meta["namespace"],
                "name": vm_meta["name"],
                "uid": vm_meta.get("uid"),
            }
            await self._create_event(f"{meta['name']}.{t.id}.vm", on_vm, t, entry["message"])

    async def _create_event(
        self, name: str, involved: dict[str, Any], t: tr.Transition, message: str
    ) -> None:
        namespace = involved["namespace"]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "type": "Warning" if t.warning else "Normal",
            "reason": t.reason,
            "message": message[:1024],
            "firstTimestamp": t.time,
            "lastTimestamp": t.time,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
        }
        try:
            await self.api.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
        except ApiError as err:
            if err.code != 409:  # 409: written before (by us before a crash, or another attempt)
                raise

    # --- status ----------------------------------------------------------------------------------
    async def _write_status(
        self,
        bmc: dict[str, Any],
        observed: tr.Observed,
        found: list[tr.Transition],
        entries: list[dict[str, Any]],
        now: str,
    ) -> None:
        meta = bmc["metadata"]
        path = bmc_path(meta["namespace"], meta["name"])
        obj: dict[str, Any] | None = bmc
        for attempt in range(CONFLICT_RETRIES):
            if obj is None:
                try:
                    obj = await self.api.request("GET", path)
                except ApiError as err:
                    if err.code == 404:
                        return  # the BMC is gone; forget() follows
                    raise
            assert obj is not None
            status = status_patch(obj, observed, found, entries, now)
            if status is None:
                return
            body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": status}
            try:
                await self.api.request("PATCH", path + "/status", body=body, content_type=MERGE_PATCH)
                return
            except ApiError as err:
                if err.code == 404:
                    return
                if err.code != 409 or attempt == CONFLICT_RETRIES - 1:
                    raise
                obj = None  # someone else wrote the BMC: read it again and rebuild the patch

    async def _write_marker(self, key: Key, bmc: dict[str, Any], memory: tr.Memory) -> None:
        value = memory.to_json()
        if value in (_annotations(bmc).get(MARKER_ANNOTATION), self._markers.get(key)):
            return
        meta = bmc["metadata"]
        body = {"metadata": {"annotations": {MARKER_ANNOTATION: value}}}
        try:
            await self.api.request(
                "PATCH", bmc_path(meta["namespace"], meta["name"]), body=body, content_type=MERGE_PATCH
            )
        except ApiError as err:
            if err.code != 404:
                raise
        self._markers[key] = value

    # --- retries ---------------------------------------------------------------------------------
    def _schedule_retry(self, key: Key, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def start() -> None:
            self._retries.pop(key, None)
            task = loop.create_task(self._retry(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._retries[key] = loop.call_later(delay, start)

    def _cancel_retry(self, key: Key) -> None:
        handle = self._retries.pop(key, None)
        if handle is not None:
            handle.cancel()

    async def _retry(self, key: Key) -> None:
        """Observe again with fresh objects: the ones of the failed call may be stale by now."""
        try:
            bmc = await self._get(bmc_path(*key))
            if bmc is None:
                self.forget(*key)
                return
            ref = _vm_ref(bmc)
            vm = await self._get(vm_path(*ref)) if ref else None
            vmi = await self._get(vm_path(ref[0], ref[1], "virtualmachineinstances")) if ref else None
        except ApiError as err:
            attempt = self._failures.get(key, 0)
            self._failures[key] = attempt + 1
            log.warning("could not read the BMC for a retry", extra={"bmc": "/".join(key), "error": str(err)})
            if key in self._locks:
                self._schedule_retry(key, RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            return
        await self.observe(bmc, vm, vmi)

    async def _get(self, path: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await self.api.request("GET", path)
        except ApiError as err:
            if err.code == 404:
                return None
            raise
        return obj


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def status_patch(
    obj: dict[str, Any],
    observed: tr.Observed,
    found: list[tr.Transition],
    entries: list[dict[str, Any]],
    now: str,
) -> dict[str, Any] | None:
    """The merge patch of `status` that records `entries` and the current state in `obj`; None when `obj`
    already shows all of it. Only our fields: powerState, powerHistory, the PoweredOn and
    BootOverridePending conditions (the list is replaced whole, so the others are copied as they are)."""
    status = obj.get("status") or {}
    history = list(status.get("powerHistory") or [])
    fresh = tr.unrecorded(found, history)  # another writer may have recorded some meanwhile
    fresh_ids = {t.id for t in fresh}
    new_entries = [e for e in entries if e["id"] in fresh_ids]
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    old_conditions = list(status.get("conditions") or [])
    conditions = tr.set_condition(
        old_conditions, "PoweredOn", tr.powered_on_condition(observed.state), now, generation
    )
    conditions = tr.set_condition(
        conditions, "BootOverridePending", tr.boot_override_pending(obj, observed.vmi), now, generation
    )
    patch: dict[str, Any] = {}
    if status.get("powerState") != observed.state:
        patch["powerState"] = observed.state
    if new_entries:
        patch["powerHistory"] = (history + new_entries)[-MAX_HISTORY:]
    if conditions != old_conditions:
        patch["conditions"] = conditions
    return patch or None
