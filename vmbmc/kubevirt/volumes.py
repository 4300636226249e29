"""The PersistentVolumeClaims and DataVolumes a VM's disks name, each read by name, for the disk sizes the
inventory reports (Redfish SimpleStorage: Ironic's inspection takes its root disk from them).

A kbmc's Role grants `get` on exactly those names (vmbmc.controller.children.disk_rules), so nothing is
listed or watched. They are read again when the VM names other claims, and on a read after
REFRESH_SECONDS (a PVC may be expanded); a failed read (a 403 before the controller has granted a new
name, an API outage) is tried again a few times, then at the next VM change or inventory read. Reads
never wait: until a claim has been read, the inventory falls back to what the VM's DataVolume template
asks for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from vmbmc.k8s.client import ApiClient, ApiError
from vmbmc.machine.inventory import disk_claims
from vmbmc.machine.media import CDI_GROUP, CDI_VERSION

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0)
TIMEOUT = 5.0

Claims = tuple[tuple[str, ...], tuple[str, ...]]


class VolumeSizes:
    """One VM's claims, read in the background; `pvcs` and `dvs` by name (absent: not read, or gone)."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.pvcs: dict[str, dict[str, Any]] = {}
        self.dvs: dict[str, dict[str, Any]] = {}
        self._names: Claims = ((), ())
        self._read_at = float("-inf")  # monotonic time of the last complete read
        self._task: asyncio.Task[None] | None = None

    def follow(self, vm: dict[str, Any]) -> None:
        """Read the VM's claims again if it names others now, or the last read is old; never waits.
        Call on the loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a read from outside the machine's loop: nothing can be scheduled
            return
        names = disk_claims(vm)
        busy = self._task is not None and not self._task.done()
        if names == self._names and (busy or time.monotonic() - self._read_at < REFRESH_SECONDS):
            return
        if busy:
            assert self._task is not None
            self._task.cancel()
        self._names = names
        self._task = loop.create_task(self._read(names))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _read(self, names: Claims) -> None:
        for delay in (0.0, *RETRY_DELAYS):
            await asyncio.sleep(delay)
            try:
                pvcs = await self._get_all("", "v1", "persistentvolumeclaims", names[0])
                dvs = await self._get_all(CDI_GROUP, CDI_VERSION, "datavolumes", names[1])
            except ApiError as err:
                log.info("cannot read the VM's disk claims yet", extra={
                    "namespace": self.namespace, "claims": list(names[0]), "code": err.code,
                    "error": err.message})
                continue
            self.pvcs, self.dvs = pvcs, dvs
            self._read_at = time.monotonic()
            return

    async def _get_all(
        self, group: str, version: str, plural: str, names: tuple[str, ...]
    ) -> dict[str, dict[str, Any]]:
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        found: dict[str, dict[str, Any]] = {}
        for name in names:
            try:
                found[name] = await self.api.request(
                    "GET", f"{base}/namespaces/{self.namespace}/{plural}/{name}", retry=False, timeout=TIMEOUT
                )
            except ApiError as err:
                if err.code != 404:  # 404: not there (yet), or CDI not installed; nothing to report
                    raise
        return found
