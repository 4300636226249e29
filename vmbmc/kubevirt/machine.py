"""`Machine` on KubeVirt: one object per BMC, delegating each concern to one collaborator.

    KubeVirtVm       (vm.py)            the VM's watch caches, fresh reads, guarded patches, tasks
    PowerControl     (power.py)         power requests, the in-flight overlay, KubeVirt's subresources
    BootOverrides    (boot_override.py) the boot override: stored, then patched into the VM
    BootRestore      (boot_restore.py)  the once-restore, and undoing a boot patch that came late
    MediaDrive       (media.py)         the virtual CD-ROM (CDI DataVolume)
    KubeVirtConsole  (console.py)       the serial console (SOL), opened on demand
    FirmwareControl  (firmware.py)      boot mode and Secure Boot of the VM's template
    Recovery         (recovery.py)      after a restart: the records a killed kbmc left pending
    Answers          (answers.py)       one answer per request id (retransmits, retries)
    SecretSubscriptions (subscriptions.py) the Redfish event subscriptions (a BMC's Secret)

Everything runs on the hub's asyncio loop: reads and `submit*` look only at the cache and never await,
so one front end's request is decided before the next one is looked at; the API calls they lead to run
as tasks on the same loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from vmbmc import naming as n
from vmbmc.k8s.client import ApiClient
from vmbmc.k8s.informer import Informer
from vmbmc.kubevirt.answers import Answers
from vmbmc.kubevirt.boot_override import BootOverrides
from vmbmc.kubevirt.boot_restore import BootRestore
from vmbmc.kubevirt.firmware import FirmwareControl
from vmbmc.kubevirt.history import HistorySource
from vmbmc.kubevirt.media import MediaDrive
from vmbmc.kubevirt.power import PowerControl
from vmbmc.kubevirt.records import RecordStore
from vmbmc.kubevirt.recovery import Recovery
from vmbmc.kubevirt.requests import EventWriter, RequestLog
from vmbmc.kubevirt.subscriptions import SecretSubscriptions
from vmbmc.kubevirt.vm import KubeVirtVm
from vmbmc.kubevirt.volumes import VolumeSizes
from vmbmc.machine import boot
from vmbmc.machine.api import Machine
from vmbmc.machine.console import Console, Output, StateListener
from vmbmc.machine.firmware import FirmwareChange, FirmwareSettings, FirmwareStatus
from vmbmc.machine.history import LogEntry, LogView
from vmbmc.machine.inventory import inventory
from vmbmc.machine.media import MediaStatus
from vmbmc.machine.subscriptions import SubscriptionStore
from vmbmc.machine.types import (
    ActionResult,
    BootMode,
    BootOverride,
    BootPersistence,
    BootTarget,
    Inventory,
    PowerAction,
    PowerStatus,
    Requester,
)


class KubeVirtMachine(Machine):
    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        api: ApiClient,
        loop: asyncio.AbstractEventLoop,
        events: EventWriter,
        vms: Informer,
        vmis: Informer,
        store: RecordStore,
        bmc: str | None,
    ) -> None:
        self.namespace, self.name = namespace, name
        self.vm = f"{namespace}/{name}"
        self.bmc = bmc
        self.loop = loop
        self.store = store  # the record holder: the BMC (its status) or, standalone, the VM
        self.requests = RequestLog(store, events, self.vm)
        self.kubevirt_vm = KubeVirtVm(
            api, loop, namespace, name, vms=vms, vmis=vmis, store=store, requests=self.requests, bmc=bmc,
        )
        self.volumes = VolumeSizes(api, namespace)  # the disks' PVCs and DataVolumes, for sizes
        self._answers = Answers()  # shared: `answer(id)` finds a power request's and a boot override's
        self.power = PowerControl(self.kubevirt_vm, self._answers)
        self.restore = BootRestore(self.kubevirt_vm, asyncio.Lock())  # the lock: one boot write at a time
        self.overrides = BootOverrides(self.kubevirt_vm, self._answers, self.restore)
        self.media = MediaDrive(self.kubevirt_vm)
        self.firmware_control = FirmwareControl(self.kubevirt_vm, self.restore.lock)
        self.log = HistorySource(store, self.requests, loop)  # the log views of the recorded history
        self.recovery = Recovery(self.kubevirt_vm, self.restore, self.media, self.log)
        # A BMC's subscriptions outlive the process in its Secret; standalone ones live in memory.
        self._subscriptions: SubscriptionStore | None = None
        if bmc is not None:
            bmc_ns, _, bmc_name = bmc.partition("/")
            self._subscriptions = SecretSubscriptions(api, bmc_ns, n.subscriptions_name(bmc_name))
        vms.subscribe(name, self._on_change)
        vmis.subscribe(name, self._on_change)
        store.informer.subscribe(store.name, self._on_change)

    def _on_change(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """On the loop, for every change of our VM, VMI or record holder."""
        self.kubevirt_vm.changed()
        self.restore.check_late()
        self.restore.check_once()
        if (vm := self.kubevirt_vm.vms.get(self.name)) is not None:
            self.volumes.follow(vm)

    async def wait_change(self, timeout: float) -> None:
        await self.kubevirt_vm.wait_change(timeout)

    def check_once_restore(self) -> None:
        """An override consumed while no kbmc was running is put back (the hub calls this at start)."""
        self.restore.check_once()

    def recover_requests(self) -> None:
        """Settle the records a previous kbmc process left `pending` (killed mid-request); none is
        sent again, whatever its age."""
        self.recovery.start()

    def close(self) -> None:
        t = self.kubevirt_vm
        t.vms.unsubscribe(t.name, self._on_change)
        t.vmis.unsubscribe(t.name, self._on_change)
        t.store.informer.unsubscribe(t.store.name, self._on_change)
        t.close()
        self.volumes.close()
        self.log.close()

    # --- reads ----------------------------------------------------------------------------
    def power_status(self) -> PowerStatus:
        return self.power.status()

    def boot_override(self) -> BootOverride:
        return self.overrides.current()

    def inventory(self) -> Inventory:
        vm = self.kubevirt_vm.current()
        self.volumes.follow(vm)
        return inventory(vm, self.kubevirt_vm.vmi(), self.volumes.pvcs, self.volumes.dvs)

    def supported_boot_targets(self) -> tuple[BootTarget, ...]:
        return boot.supported_targets(self.kubevirt_vm.current())

    # --- power ----------------------------------------------------------------------------
    def submit(self, action: PowerAction, requester: Requester) -> ActionResult:
        return self.power.submit(action, requester)

    async def act(
        self, action: PowerAction, requester: Requester, *, settle_timeout: float = 30.0
    ) -> ActionResult:
        return await self.power.act(action, requester, settle_timeout=settle_timeout)

    def answer(self, request_id: str) -> asyncio.Future[Any] | None:
        return self._answers.future(request_id)

    # --- boot override ----------------------------------------------------------------------
    def submit_boot_override(
        self,
        requester: Requester,
        *,
        target: BootTarget | None = None,
        enabled: BootPersistence | None = None,
        mode: BootMode | None = None,
    ) -> BootOverride:
        return self.overrides.submit(requester, target, enabled, mode)[0]

    async def set_boot_override(
        self,
        requester: Requester,
        *,
        target: BootTarget | None = None,
        enabled: BootPersistence | None = None,
        mode: BootMode | None = None,
    ) -> BootOverride:
        result, future = self.overrides.submit(requester, target, enabled, mode)
        return result if future is None else await asyncio.shield(future)

    # --- virtual media ----------------------------------------------------------------------
    def virtual_media(self) -> MediaStatus:
        return self.media.status()

    async def insert_media(self, requester: Requester, image: str) -> asyncio.Future[MediaStatus]:
        return await self.media.insert(requester, image)

    async def eject_media(self, requester: Requester) -> MediaStatus:
        return await self.media.eject(requester)

    # --- firmware settings -------------------------------------------------------------------
    def firmware(self) -> FirmwareStatus:
        return self.firmware_control.status()

    async def set_firmware(self, requester: Requester, change: FirmwareChange) -> FirmwareSettings:
        return await self.firmware_control.set(requester, change)
    # --- the power history's log views (vmbmc.kubevirt.history) --------------------------------------
    def history(self) -> LogView:
        return self.log.view()

    def clear_log(self, requester: Requester) -> asyncio.Future[LogEntry]:
        return self.log.clear(requester)

    def watch_history(self, listener: Callable[[LogView], None]) -> Callable[[], None]:
        return self.log.watch(listener)

    def event_subscriptions(self) -> SubscriptionStore:
        return self._subscriptions or super().event_subscriptions()

    # --- console ------------------------------------------------------------------------------
    def open_console(self, output: Output, state: StateListener) -> Console:
        # imported here: a BMC whose console nobody opens never loads the WebSocket client
        from vmbmc.kubevirt.console import KubeVirtConsole

        t = self.kubevirt_vm
        return KubeVirtConsole(t.api, t.vmis, t.namespace, t.name, output, state)
