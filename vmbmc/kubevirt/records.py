"""Where a BMC keeps what must outlive its process: the boot override, the request records, the log clear.

CR mode: `status.bootOverride`, `status.requests` and `status.logClearedAt` of the VirtualMachineBMC
(fields the kbmc writes; it reads the controller's `status.powerHistory` from the same object),
written with merge patches on the status subresource guarded by resourceVersion and retried on 409, so the
controller's status writes and ours never clobber each other. Standalone mode: the same data as JSON
in annotations of the VM (prefix `virtualmachinebmc.kubevirt.io/`). The holder also receives the BMC's
Events (`vmbmc.kubevirt.requests`).
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from vmbmc import naming as n
from vmbmc.k8s.client import ApiClient, ApiError
from vmbmc.k8s.informer import Informer, OwnWrites
from vmbmc.k8s.status import guarded_patch
from vmbmc.machine.boot import StoredOverride

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = f"{n.LABEL_PREFIX}/"
BOOT_ANNOTATION = ANNOTATION_PREFIX + "boot-override"
REQUESTS_ANNOTATION = ANNOTATION_PREFIX + "requests"
MEDIA_ANNOTATION = ANNOTATION_PREFIX + "virtual-media"
LOG_CLEARED_ANNOTATION = ANNOTATION_PREFIX + "log-cleared-at"
MAX_REQUESTS = 10
COMPONENT = "vmbmc-kbmc"



def reporting_instance() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


def merge_diff(old: Any, new: Any) -> Any:
    """A merge patch (RFC 7386) turning `old` into exactly `new`: keys that go are set to null, since a
    merge patch merges nested objects (a saved `efi` bootloader must not survive next to a new `bios`)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        out[k] = merge_diff(old.get(k), v)
    return out


def subresource_path(namespace: str, name: str, resource: str, subresource: str) -> str:
    """KubeVirt's aggregated API: PUT /apis/subresources.kubevirt.io/v1/namespaces/NS/RESOURCE/NAME/SUB."""
    return f"/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/{resource}/{name}/{subresource}"


class RecordStore(abc.ABC):
    """The object that holds a BMC's boot override and request records, and receives its Events."""

    def __init__(self, api: ApiClient, informer: Informer, namespace: str, name: str) -> None:
        self.api = api
        self.informer = informer
        self.namespace = namespace
        self.name = name
        self._own = OwnWrites(informer)  # our own last write's answer (the cache may lag)
        self._lock = asyncio.Lock()

    # --- reading --------------------------------------------------------------------------
    def current(self) -> dict[str, Any] | None:
        return self._own.current(self.name)

    def note(self, obj: dict[str, Any]) -> None:
        """A newer version of the holder that someone else in this process wrote."""
        self._own.note(obj)

    def override(self) -> StoredOverride | None:
        obj = self.current()
        return StoredOverride.from_dict(self._read_override(obj)) if obj else None

    def requests(self) -> list[dict[str, Any]]:
        obj = self.current()
        return self._read_requests(obj) if obj else []

    def media(self) -> list[dict[str, Any]]:
        """`status.virtualMedia` (or its annotation in standalone mode)."""
        obj = self.current()
        return self._read_media(obj) if obj else []

    def power_history(self) -> list[dict[str, Any]]:
        """`status.powerHistory` (the controller's); none in standalone mode, where no controller runs."""
        obj = self.current()
        return self._read_history(obj) if obj else []

    def log_cleared(self) -> dict[str, Any] | None:
        """`status.logClearedAt` (or its annotation in standalone mode)."""
        obj = self.current()
        return self._read_log_cleared(obj) if obj else None

    def involved_object(self) -> dict[str, Any] | None:
        obj = self.current()
        if obj is None:
            return None
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "uid": obj["metadata"].get("uid"),
        }

    # --- writing --------------------------------------------------------------------------
    async def write_override(self, stored: StoredOverride | None) -> None:
        await self._update(lambda obj: self._override_patch(obj, stored))

    async def write_media(self, entries: list[dict[str, Any]]) -> None:
        await self._update(lambda obj: self._media_patch(entries))

    async def write_log_cleared(self, value: dict[str, Any]) -> None:
        await self._update(lambda obj: self._log_cleared_patch(value))

    async def record_request(self, entry: dict[str, Any]) -> None:
        """Add the entry, or update the one with the same id (newest last, at most 10)."""

        def patch(obj: dict[str, Any]) -> dict[str, Any]:
            reqs = [r for r in self._read_requests(obj) if r.get("id") != entry["id"]]
            old = next((r for r in self._read_requests(obj) if r.get("id") == entry["id"]), None)
            if old is not None:  # keep its place in the list
                reqs = [entry if r.get("id") == entry["id"] else r for r in self._read_requests(obj)]
            else:
                reqs.append(entry)
            return self._requests_patch(reqs[-MAX_REQUESTS:])

        await self._update(patch)

    async def _update(self, make_patch: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Merge patch guarded by resourceVersion (vmbmc.k8s.status), starting from the cache."""
        async with self._lock:
            written = await guarded_patch(
                self.api, self.path(), make_patch, subresource=self.subresource, current=self.current()
            )
            if written is None:
                raise ApiError(404, "NotFound", f"{self.kind} {self.namespace}/{self.name} not found")
            self.note(written)

    # --- what differs between a BMC's status and a VM's annotations --------------------------
    kind: str
    api_version: str

    @abc.abstractmethod
    def path(self) -> str: ...

    subresource: str  # where the records are written: "status", or "" (the object itself)

    @abc.abstractmethod
    def _read_override(self, obj: dict[str, Any]) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def _read_requests(self, obj: dict[str, Any]) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def _override_patch(self, obj: dict[str, Any], stored: StoredOverride | None) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _requests_patch(self, reqs: list[dict[str, Any]]) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _read_media(self, obj: dict[str, Any]) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def _media_patch(self, entries: list[dict[str, Any]]) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _read_history(self, obj: dict[str, Any]) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def _read_log_cleared(self, obj: dict[str, Any]) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def _log_cleared_patch(self, value: dict[str, Any]) -> dict[str, Any]: ...


class BmcStatusStore(RecordStore):
    kind = n.KIND
    api_version = n.API_VERSION

    def path(self) -> str:
        return n.bmc_path(self.namespace, self.name)

    subresource = "status"

    def _read_override(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return (obj.get("status") or {}).get("bootOverride")

    def _read_requests(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        return list((obj.get("status") or {}).get("requests") or [])

    def _override_patch(self, obj: dict[str, Any], stored: StoredOverride | None) -> dict[str, Any]:
        new = None if stored is None else stored.to_dict()
        return {"status": {"bootOverride": merge_diff(self._read_override(obj), new)}}

    def _requests_patch(self, reqs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"status": {"requests": reqs}}

    def _read_media(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        return list((obj.get("status") or {}).get("virtualMedia") or [])

    def _media_patch(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"status": {"virtualMedia": entries}}

    def _read_history(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        return list((obj.get("status") or {}).get("powerHistory") or [])

    def _read_log_cleared(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        value = (obj.get("status") or {}).get("logClearedAt")
        return value if isinstance(value, dict) else None

    def _log_cleared_patch(self, value: dict[str, Any]) -> dict[str, Any]:
        return {"status": {"logClearedAt": value}}


class VmAnnotationStore(RecordStore):
    """Standalone mode: the same records as JSON in the VM's annotations."""

    kind = "VirtualMachine"
    api_version = n.VM_API_VERSION

    def path(self) -> str:
        return n.vm_path(self.namespace, self.name)

    subresource = ""

    @staticmethod
    def _annotation(obj: dict[str, Any], key: str) -> Any:
        raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _read_override(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        value = self._annotation(obj, BOOT_ANNOTATION)
        return value if isinstance(value, dict) else None

    def _read_requests(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        value = self._annotation(obj, REQUESTS_ANNOTATION)
        return value if isinstance(value, list) else []

    def _override_patch(self, obj: dict[str, Any], stored: StoredOverride | None) -> dict[str, Any]:
        value = None if stored is None else json.dumps(stored.to_dict(), separators=(",", ":"))
        return {"metadata": {"annotations": {BOOT_ANNOTATION: value}}}

    def _requests_patch(self, reqs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"metadata": {"annotations": {REQUESTS_ANNOTATION: json.dumps(reqs, separators=(",", ":"))}}}

    def _read_media(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        value = self._annotation(obj, MEDIA_ANNOTATION)
        return value if isinstance(value, list) else []

    def _media_patch(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        value = json.dumps(entries, separators=(",", ":")) if entries else None
        return {"metadata": {"annotations": {MEDIA_ANNOTATION: value}}}

    def _read_history(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        return []  # no controller records transitions for a standalone BMC

    def _read_log_cleared(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        value = self._annotation(obj, LOG_CLEARED_ANNOTATION)
        return value if isinstance(value, dict) else None

    def _log_cleared_patch(self, value: dict[str, Any]) -> dict[str, Any]:
        value_text = json.dumps(value, separators=(",", ":"))
        return {"metadata": {"annotations": {LOG_CLEARED_ANNOTATION: value_text}}}
