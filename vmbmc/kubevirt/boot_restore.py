"""Putting a VM's boot order back, as this BMC's own recorded request (protocol kbmc), so the
BootDeviceChanged it causes names the BMC, never `outside the BMC`:

- the once-restore: a `Once` override whose VMI has been replaced is consumed; the saved order goes back;
- a late patch: a boot patch that got no answer within the bound can only ever land as the VM version
  right after the one it was guarded by; should it land, it is undone (docs/power-history.md).

Both hold the boot override's lock, so no override is applied while the order is being put back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from vmbmc.k8s.client import ApiError
from vmbmc.kubevirt.errors import machine_error
from vmbmc.kubevirt.vm import KubeVirtVm
from vmbmc.machine import boot
from vmbmc.machine.errors import MachineError, NotFound
from vmbmc.machine.observe import vmi_uid
from vmbmc.machine.requests import CALL_BOUND_SECONDS, LATE_TEXT, RESTORE_ACTION, kbmc_requester
from vmbmc.machine.types import Effect, Requester

log = logging.getLogger(__name__)

LATE_WATCH_SECONDS = 120.0  # how long an unanswered boot patch is watched for (the attribution window)
PATCH_RETRIES = 5


@dataclass
class LatePatch:
    """A boot order patch that got no answer within the bound: it can only ever land as the version right
    after `vm` (its guard), and is undone if it does (docs/power-history.md)."""

    request_id: str
    vm: dict[str, Any]  # the version the patch was guarded by
    settings: tuple[Any, ...]  # the VM's boot settings once the patch is applied
    # monotonic: stop looking after the attribution window
    until: float = field(default_factory=lambda: time.monotonic() + LATE_WATCH_SECONDS)

    @property
    def resource_version(self) -> str:
        return resource_version(self.vm)


def resource_version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def restore_id(stored: boot.StoredOverride, vmi: str) -> str:
    """The restore's request id: the override's, marked, so the records show which override it ends; the
    same for every attempt and every kbmc process (a retried record replaces itself)."""
    return f"{stored.request_id or 'override'}-restore-{vmi[:8]}"


class BootRestore:
    def __init__(self, vm: KubeVirtVm, lock: asyncio.Lock) -> None:
        self.vm = vm
        self.lock = lock  # the boot override's: one boot write at a time
        self._late: list[LatePatch] = []  # boot patches unanswered within the bound
        self._restoring: asyncio.Task[None] | None = None

    # --- a boot order patch that came late ------------------------------------------------------
    def watch(self, late: LatePatch) -> None:
        """Watch for `late` from now on: undone if it lands."""
        self._late.append(late)

    def forget_guarded_by(self, vm: dict[str, Any]) -> None:
        """Our own VM patch guarded by `vm` was answered: the version after it is ours, so no late patch
        guarded by that same version can land any more."""
        rv = resource_version(vm)
        self._late = [late for late in self._late if late.resource_version != rv]

    def check_late(self) -> None:
        """On the loop, for every change: a boot patch that got no answer within the bound can only
        land as the VM version right after the one it was guarded by. The first newer version tells:
        if it carries exactly that patch's boot settings, the patch came late and is undone (as this
        BMC's own recorded request); otherwise it can never land any more."""
        if not self._late:
            return
        try:
            vm = self.vm.current()
        except NotFound:
            self._late = []
            return
        rv = resource_version(vm)
        now = time.monotonic()
        keep: list[LatePatch] = []
        for late in self._late:
            if now > late.until:
                continue  # beyond the attribution window: stop looking
            if rv == late.resource_version:
                keep.append(late)
                continue
            settings = boot.boot_settings(vm)
            if settings == late.settings != boot.boot_settings(late.vm):
                self.vm.spawn(self._undo_late(late))
        self._late = keep

    async def _undo_late(self, late: LatePatch) -> None:
        """Put the VM's boot order and firmware back as they were before the late patch, recorded first
        as a request of the kbmc's own (protocol kbmc), so its BootDeviceChanged names the BMC."""
        undoer = kbmc_requester(f"{late.request_id}-undo")
        saved = boot.StoredOverride(
            saved_boot_order=boot.saved_boot_order(late.vm), saved_firmware=boot.bootloader(late.vm)
        )
        log.warning(
            "boot override came late; undoing it", extra={"vm": self.vm.ref, "request_id": late.request_id}
        )
        requests = self.vm.requests
        try:
            async with asyncio.timeout(CALL_BOUND_SECONDS):
                await requests.open(
                    undoer,
                    RESTORE_ACTION,
                    Effect.PENDING,
                    what=f"boot override {late.request_id} {LATE_TEXT}; put back",
                )
                async with self.lock:
                    for tries in range(PATCH_RETRIES):
                        vm = self.vm.current() if tries == 0 else await self.vm.fresh()
                        if vm is None:
                            break
                        ops = boot.restore_ops(vm, saved)
                        if not ops:
                            break
                        try:
                            await self.vm.patch(vm, ops)
                            break
                        except ApiError as err:
                            if err.code not in (409, 422) or tries == PATCH_RETRIES - 1:
                                raise machine_error(err, f"VirtualMachine {self.vm.ref}") from err
        except (MachineError, TimeoutError) as err:
            text = err.message if isinstance(err, MachineError) else f"not done in {CALL_BOUND_SECONDS:g} s"
            await requests.settle(undoer, RESTORE_ACTION, Effect.FAILED, text)
            return
        await requests.settle(undoer, RESTORE_ACTION, Effect.CALLED)

    # --- Once restore -------------------------------------------------------------------------
    def check_once(self) -> None:
        """On the loop: a Once override whose VMI has been replaced is consumed; put the order back."""
        if self._restoring is not None and not self._restoring.done():
            return
        stored = self.vm.store.override()
        vmi = self.vm.vmi()
        if stored is None or not stored.pending_once or vmi is None or vmi_uid(vmi) == stored.vmi_uid:
            return
        self._restoring = self.vm.spawn(self._restore_once())

    async def _restore_once(self) -> None:
        """Put the boot order back. The patch is this BMC's own request (protocol kbmc), recorded before
        it is made, so the BootDeviceChanged it causes is attributed to the BMC and names the override."""
        store, requests = self.vm.store, self.vm.requests
        async with self.lock:
            restorer: Requester | None = None
            for attempt in range(PATCH_RETRIES):
                stored = store.override()
                vmi = self.vm.vmi()
                if stored is None or not stored.pending_once or vmi is None or vmi_uid(vmi) == stored.vmi_uid:
                    return
                try:
                    vm = self.vm.current() if attempt == 0 else await self.vm.fresh()
                    if vm is None:
                        return
                    ops = boot.restore_ops(vm, stored)
                    if ops:
                        if restorer is None:
                            restorer = kbmc_requester(restore_id(stored, vmi_uid(vmi)))
                            await requests.open(
                                restorer,
                                RESTORE_ACTION,
                                Effect.PENDING,
                                what=f"one-time override {stored.request_id or '?'} was used",
                            )
                        await self.vm.patch(vm, ops)
                    await store.write_override(None)
                    if restorer is not None:
                        await requests.settle(restorer, RESTORE_ACTION, Effect.CALLED)
                    log.info(
                        "Once boot override consumed; boot order restored",
                        extra={"vm": self.vm.ref, "vmi_uid": vmi_uid(vmi), "target": stored.target.value},
                    )
                    return
                except (ApiError, MachineError) as err:
                    log.warning(
                        "boot order restore failed; retrying",
                        extra={"vm": self.vm.ref, "error": str(err), "attempt": attempt + 1},
                    )
                    if attempt == PATCH_RETRIES - 1 and restorer is not None:
                        await requests.settle(restorer, RESTORE_ACTION, Effect.FAILED, str(err))
                        return
                    await asyncio.sleep(0.2 * (attempt + 1))
