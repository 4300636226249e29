"""After a kbmc restart: settle the request records a previous process left `pending` (killed
mid-request) from what KubeVirt shows now, and send none of them again, whatever its age; clear a stored
boot override whose own request failed (a change the VM never got)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from vmbmc.k8s.client import ApiError
from vmbmc.kubevirt.boot_restore import BootRestore, LatePatch
from vmbmc.kubevirt.history import HistorySource
from vmbmc.kubevirt.media import MediaDrive
from vmbmc.kubevirt.vm import KubeVirtVm
from vmbmc.machine import boot
from vmbmc.machine.errors import MachineError
from vmbmc.machine.media import EJECT_ACTION, INSERT_ACTION
from vmbmc.machine.observe import observe
from vmbmc.machine.requests import BOOT_ACTION, LOG_CLEAR_ACTION
from vmbmc.machine.types import Effect, PowerAction, PowerState

log = logging.getLogger(__name__)


def _seconds(stamp: str) -> float:
    """An RFC 3339 time in whole seconds (KubeVirt records whole seconds); 0 when unreadable."""
    try:
        return float(int(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()))
    except ValueError:
        return 0.0


class Recovery:
    def __init__(self, vm: KubeVirtVm, restore: BootRestore, media: MediaDrive, log: HistorySource) -> None:
        self.vm = vm
        self.restore = restore
        self.media = media
        self.log = log

    def start(self) -> asyncio.Task[None]:
        return self.vm.spawn(self._recover())

    async def _recover(self) -> None:
        await self.vm.requests.recover(self._carried_out)
        await self._drop_failed_override()

    async def _drop_failed_override(self) -> None:
        """A stored override whose own request ended `failed` names a change the VM never got (the
        process died between storing it and patching the VM): clear it, as a roll-back would have. Its
        patch may still sit in a hung API server, guarded by the VM version we see now: it is watched
        for, and undone if it lands, as an unanswered patch of this process would be."""
        store = self.vm.store
        async with self.restore.lock:
            stored = store.override()
            if stored is None or not stored.request_id:
                return
            entry = next((r for r in store.requests() if r.get("id") == stored.request_id), None)
            if entry is None or entry.get("effect") != Effect.FAILED.value:
                return
            try:
                vm = self.vm.current()
                ops = boot.order_ops(vm, stored.target) + boot.mode_ops(vm, stored.mode)
                if ops:
                    late = boot.boot_settings(boot.applied(vm, ops))
                    self.restore.watch(LatePatch(stored.request_id, vm, late))
            except MachineError:
                pass  # no VM: nothing to watch
            try:
                await store.write_override(None)
            except ApiError as err:
                log.warning(
                    "could not clear a failed boot override", extra={"vm": self.vm.ref, "error": err.message}
                )

    def _carried_out(self, entry: dict[str, Any]) -> bool:
        """Does what KubeVirt shows now prove that the request's call was accepted? A call is decided
        only when the VM was not yet where it leads, and KubeVirt changes the VM as it accepts it."""
        rid = entry.get("id")
        store = self.vm.store
        holder = store.current() or {}
        history = (holder.get("status") or {}).get("powerHistory") or []
        if any(h.get("requestId") == rid for h in history):
            return True  # the controller already credited a transition to it
        action = str(entry.get("action"))
        if action == BOOT_ACTION:  # stored first, then the VM patch: both must show it
            stored = store.override()
            if stored is None or stored.request_id != rid:
                return False
            try:
                return boot.in_effect(self.vm.current(), stored)
            except MachineError:
                return False
        if action in (INSERT_ACTION, EJECT_ACTION):
            return self.media.carried_out(action)
        if action == LOG_CLEAR_ACTION:
            return self.log.carried_out(str(rid))
        try:
            power = PowerAction(action)
            vm, vmi = self.vm.current(), self.vm.vmi()
        except (ValueError, MachineError):
            return False
        state = observe(vm, vmi)
        if power is PowerAction.ON:
            return state in (PowerState.ON, PowerState.POWERING_ON)
        if power in (PowerAction.OFF, PowerAction.SHUTDOWN):
            return state in (PowerState.OFF, PowerState.POWERING_OFF)
        if power is PowerAction.PAUSE:
            return state is PowerState.PAUSED
        if power is PowerAction.RESUME:
            return state is PowerState.ON
        created = str(((vmi or {}).get("metadata") or {}).get("creationTimestamp") or "")
        return bool(created) and _seconds(created) >= _seconds(str(entry.get("time") or ""))
