"""Firmware settings on KubeVirt: the boot mode and Secure Boot of the VM's template (vmbmc.machine.firmware).

A request is decided at once from the cache (a combination KubeVirt cannot boot is refused before any
record), recorded (FirmwareSettingsSet), then patched into the VM guarded by uid and resourceVersion,
within CALL_BOUND_SECONDS. The VM's spec is then the pending setting and reads back at once (our own
write is the newest VM the cache knows); KubeVirt gives it to the next VMI it creates, which is when a
Redfish `OnReset` setting takes effect. A pending Once boot override keeps what the client asked for:
its saved bootloader, which the once-restore puts back, gets the same change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vmbmc.k8s.client import ApiError
from vmbmc.kubevirt.errors import machine_error
from vmbmc.kubevirt.vm import KubeVirtVm
from vmbmc.machine import firmware as fw
from vmbmc.machine.boot import StoredOverride
from vmbmc.machine.errors import BackendUnavailable, Busy, MachineError, NotFound, Unanswered
from vmbmc.machine.requests import CALL_BOUND_SECONDS, FIRMWARE_ACTION
from vmbmc.machine.types import Effect, Requester

log = logging.getLogger(__name__)

PATCH_RETRIES = 5


def _rv(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


class FirmwareControl:
    def __init__(self, vm: KubeVirtVm, lock: asyncio.Lock) -> None:
        self.vm = vm
        self.lock = lock  # the boot override's: one write of the VM's boot settings at a time

    def status(self) -> fw.FirmwareStatus:
        return fw.status(self.vm.current(), self.vm.vmi())

    async def set(self, requester: Requester, change: fw.FirmwareChange) -> fw.FirmwareSettings:
        if self.vm.vms.stale:
            raise BackendUnavailable("the Kubernetes API is unreachable; cannot change the firmware now")
        vm = self.vm.current()
        wanted = fw.resulting(fw.status(vm, None).pending, change)  # FirmwareConflict: no record
        requests, what = self.vm.requests, change.text()
        if not fw.plan(vm, wanted) and fw.restored_with(self.vm.store.override(), change) is None:
            await requests.open(requester, FIRMWARE_ACTION, Effect.NONE, what=what,
                                note="the VM's spec has these settings already")
            return wanted
        await requests.open(requester, FIRMWARE_ACTION, Effect.PENDING, what=what)
        try:
            try:
                async with asyncio.timeout(CALL_BOUND_SECONDS), self.lock:
                    await self._apply(change, wanted)
            except TimeoutError as err:
                raise Unanswered(
                    f"no answer from the Kubernetes API within {CALL_BOUND_SECONDS:g} s; the change is not "
                    "sent again and may still be carried out"
                ) from err
        except MachineError as err:
            outcome = Effect.UNKNOWN if isinstance(err, Unanswered) else Effect.FAILED
            log.warning("firmware settings not applied",
                        extra={"vm": self.vm.ref, "error": err.message, "request_id": requester.request_id})
            await requests.settle(requester, FIRMWARE_ACTION, outcome, err.message)
            raise
        await requests.settle(requester, FIRMWARE_ACTION, Effect.CALLED)
        log.info("firmware settings patched", extra={"vm": self.vm.ref, "settings": what,
                                                      "request_id": requester.request_id})
        return wanted

    async def _apply(self, change: fw.FirmwareChange, wanted: fw.FirmwareSettings) -> None:
        """Store a pending Once override's new saved bootloader first (status first, as a boot override
        does), then patch the VM; a stale read is read again and planned again. A patch that fails for
        good puts the record back."""
        store = self.vm.store
        before = store.override()
        written = False
        vm: dict[str, Any] | None = self.vm.current()
        try:
            for tries in range(PATCH_RETRIES):
                if vm is None:
                    raise NotFound(f"VirtualMachine {self.vm.ref} not found")
                record = fw.restored_with(store.override(), change)
                try:
                    if record is not None:
                        await store.write_override(record)
                        written = True
                        if store.kind == "VirtualMachine":  # the annotation write made a new VM version
                            vm = store.current() or vm
                    ops = fw.plan(vm, wanted)
                    if ops:
                        await self.vm.patch(vm, ops)
                    return
                except ApiError as err:
                    if err.code in (409, 422) and tries < PATCH_RETRIES - 1:
                        fresh = await self.vm.fresh()
                        if fresh is None or _rv(fresh) != _rv(vm):
                            vm = fresh  # changed since we read it: plan again
                            continue
                    raise machine_error(err, f"VirtualMachine {self.vm.ref}") from err
            raise Busy(f"VirtualMachine {self.vm.ref} keeps changing; retry")
        except (MachineError, asyncio.CancelledError):
            if written:
                await self._put_back(before)
            raise

    async def _put_back(self, before: StoredOverride | None) -> None:
        try:
            async with asyncio.timeout(CALL_BOUND_SECONDS):
                await self.vm.store.write_override(before)
        except (ApiError, TimeoutError):
            log.exception("could not put the boot override record back", extra={"vm": self.vm.ref})
