"""Where a BMC keeps what must outlive its process: the boot override and the request records.

CR mode: `status.bootOverride` and `status.requests` of the VirtualMachineBMC (contracts §2), written
with merge patches on the status subresource guarded by resourceVersion and retried on 409, so the
controller's status writes and ours never clobber each other. Standalone mode: the same data as JSON
in annotations of the VM (prefix `virtualmachinebmc.kubevirt.io/`). Events (contracts §4) go on the BMC,
or on the VM in standalone mode, as core/v1 Events with a name derived from the request, so an
event is written once even when the write is retried.
"""

from __future__ import annotations

import abc
import asyncio
import datetime
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from vmbmc.kubevirt.client import MERGE_PATCH, ApiClient, ApiError
from vmbmc.kubevirt.informer import Informer, rv_newer
from vmbmc.machine.boot import StoredOverride

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = "virtualmachinebmc.kubevirt.io/"
BOOT_ANNOTATION = ANNOTATION_PREFIX + "boot-override"
REQUESTS_ANNOTATION = ANNOTATION_PREFIX + "requests"
MAX_REQUESTS = 10
COMPONENT = "vmbmc-kbmc"
CONFLICT_RETRIES = 8

BMC_GROUP, BMC_VERSION, BMC_PLURAL, BMC_KIND = (
    "virtualmachine.kubevirt.io",
    "v1",
    "virtualmachinebmcs",
    "VirtualMachineBMC",
)
VM_API_VERSION = "kubevirt.io/v1"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reporting_instance() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


def bmc_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{BMC_GROUP}/{BMC_VERSION}/namespaces/{namespace}/{BMC_PLURAL}"
    return f"{base}/{name}" if name else base


def vm_path(namespace: str, name: str | None = None, resource: str = "virtualmachines") -> str:
    base = f"/apis/kubevirt.io/v1/namespaces/{namespace}/{resource}"
    return f"{base}/{name}" if name else base


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
        self._latest: dict[str, Any] | None = None  # our own last write's answer (the cache may lag)
        self._lock = asyncio.Lock()

    # --- reading --------------------------------------------------------------------------
    def current(self) -> dict[str, Any] | None:
        cached = self.informer.get(self.name)
        if cached is None:
            return None  # deleted: forget our own writes too
        return rv_newer(cached, self._latest)

    def note(self, obj: dict[str, Any]) -> None:
        """A newer version of the holder that someone else in this process wrote."""
        self._latest = rv_newer(self._latest, obj)

    def override(self) -> StoredOverride | None:
        obj = self.current()
        return StoredOverride.from_dict(self._read_override(obj)) if obj else None

    def requests(self) -> list[dict[str, Any]]:
        obj = self.current()
        return self._read_requests(obj) if obj else []

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
        """Merge patch guarded by resourceVersion; on 409 re-read and try again."""
        async with self._lock:
            obj = self.current()
            for attempt in range(CONFLICT_RETRIES):
                if obj is None:
                    obj = await self.api.request("GET", self.path())
                body = make_patch(obj)
                body.setdefault("metadata", {})["resourceVersion"] = obj["metadata"]["resourceVersion"]
                try:
                    self.note(
                        await self.api.request(
                            "PATCH", self.patch_path(), body=body, content_type=MERGE_PATCH
                        )
                    )
                    return
                except ApiError as err:
                    if err.code != 409 or attempt == CONFLICT_RETRIES - 1:
                        raise
                    obj = None

    # --- what differs between a BMC's status and a VM's annotations --------------------------
    kind: str
    api_version: str

    @abc.abstractmethod
    def path(self) -> str: ...

    @abc.abstractmethod
    def patch_path(self) -> str: ...

    @abc.abstractmethod
    def _read_override(self, obj: dict[str, Any]) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def _read_requests(self, obj: dict[str, Any]) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def _override_patch(self, obj: dict[str, Any], stored: StoredOverride | None) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _requests_patch(self, reqs: list[dict[str, Any]]) -> dict[str, Any]: ...


class BmcStatusStore(RecordStore):
    kind = BMC_KIND
    api_version = f"{BMC_GROUP}/{BMC_VERSION}"

    def path(self) -> str:
        return bmc_path(self.namespace, self.name)

    def patch_path(self) -> str:
        return self.path() + "/status"

    def _read_override(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return (obj.get("status") or {}).get("bootOverride")

    def _read_requests(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        return list((obj.get("status") or {}).get("requests") or [])

    def _override_patch(self, obj: dict[str, Any], stored: StoredOverride | None) -> dict[str, Any]:
        new = None if stored is None else stored.to_dict()
        return {"status": {"bootOverride": merge_diff(self._read_override(obj), new)}}

    def _requests_patch(self, reqs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"status": {"requests": reqs}}


class VmAnnotationStore(RecordStore):
    """Standalone mode: the same records as JSON in the VM's annotations."""

    kind = "VirtualMachine"
    api_version = VM_API_VERSION

    def path(self) -> str:
        return vm_path(self.namespace, self.name)

    def patch_path(self) -> str:
        return self.path()

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


class EventWriter:
    """core/v1 Events, named `<object>.<16 hex digits>` from a key: a retried write is a 409, not a copy."""

    def __init__(self, api: ApiClient, salt: str) -> None:
        self.api = api
        self.salt = salt  # per process: request ids of two processes never collide into one name
        self.instance = reporting_instance()

    async def emit(
        self, involved: dict[str, Any] | None, event_type: str, reason: str, message: str, key: str
    ) -> None:
        if involved is None:
            return
        digest = hashlib.sha256(f"{self.salt}/{key}".encode()).hexdigest()[:16]
        stamp = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{involved['name']}.{digest}", "namespace": involved["namespace"]},
            "involvedObject": involved,
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
        }
        try:
            await self.api.request("POST", f"/api/v1/namespaces/{involved['namespace']}/events", body=body)
        except ApiError as err:
            if err.code != 409:
                log.warning(
                    "could not write Event",
                    extra={
                        "reason": reason,
                        "object": involved["name"],
                        "code": err.code,
                        "error": err.message,
                    },
                )
