"""The interface every protocol front end uses: one `Machine` per BMC.

Front ends (vmbmc.kbmc, vmbmc.redfish) see only this class and the types/errors of this package;
they never know whether the back end is KubeVirt, the emulator or a test double.

Everything runs on the machine's asyncio loop (`Machine.loop`): `power_status`, `boot_override`,
`inventory` and `submit` never block, never await and never call the API server (they read the watch
cache), so the IPMI server answers from them at once; the coroutines await KubeVirt.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable

from vmbmc.machine.console import Console, Output, StateListener
from vmbmc.machine.errors import NotSupported
from vmbmc.machine.firmware import FirmwareChange, FirmwareSettings, FirmwareStatus
from vmbmc.machine.history import LogEntry, LogView
from vmbmc.machine.media import MediaStatus
from vmbmc.machine.subscriptions import MemoryStore, SubscriptionStore
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


class Machine(abc.ABC):
    """Power and boot state of one VM as one BMC sees and changes it."""

    #: "namespace/name" of the VM
    vm: str
    #: "namespace/name" of the VirtualMachineBMC, or None in standalone mode
    bmc: str | None
    #: the loop the coroutines below run on
    loop: asyncio.AbstractEventLoop

    # --- reads: from the cache, < 1 ms, never raise for a cached VM -------------------------
    @abc.abstractmethod
    def power_status(self) -> PowerStatus:
        """Observed state. Raises NotFound if the VM does not exist (as far as the cache knows)."""

    @abc.abstractmethod
    def boot_override(self) -> BootOverride:
        """The override in effect as stored, plus a write not yet confirmed by the watch."""

    @abc.abstractmethod
    def inventory(self) -> Inventory:
        """UUID, CPUs, memory, NICs, disks and boot mode from the VM spec (and VMI status)."""

    @abc.abstractmethod
    def supported_boot_targets(self) -> tuple[BootTarget, ...]:
        """Targets this VM can honour (None always; Pxe only with a NIC; Cd only with a cdrom...)."""

    # --- actions ----------------------------------------------------------------------------
    @abc.abstractmethod
    def submit(self, action: PowerAction, requester: Requester) -> ActionResult:
        """Decide at once from the cache and schedule the KubeVirt call; never blocks.

        For IPMI: returns at once with effect `pending` (call scheduled) or `none` (nothing to do),
        or raises Busy / Refused / NotSupported / NotFound. A second submit with the same
        `requester.request_id` returns the first one's result and calls nothing.
        """

    def answer(self, request_id: str) -> asyncio.Future[ActionResult] | None:
        """KubeVirt's answer to a request `submit` took (its ActionResult, or the MachineError), or None
        when it needs none (decided from the cache). IPMI answers success only once it is in."""
        return None

    @abc.abstractmethod
    async def act(
        self, action: PowerAction, requester: Requester, *, settle_timeout: float = 30.0
    ) -> ActionResult:
        """Like `submit` but waits: while Busy it waits up to `settle_timeout` seconds for the
        transition to settle, then acts and awaits KubeVirt's answer (effect `called`, or raises
        BackendUnavailable / Forbidden / NotFound). For Redfish, where the request may block.
        """

    @abc.abstractmethod
    def submit_boot_override(
        self,
        requester: Requester,
        *,
        target: BootTarget | None = None,
        enabled: BootPersistence | None = None,
        mode: BootMode | None = None,
    ) -> BootOverride:
        """Validate at once and schedule the write; never blocks (for IPMI).

        `None` keeps that part as it is. Raises Invalid / NotSupported for a target the VM cannot
        honour (never silently accepted). The returned override is what `boot_override()` reports
        once the change is accepted; `answer(requester.request_id)` resolves then (or with the error).
        """

    @abc.abstractmethod
    async def set_boot_override(
        self,
        requester: Requester,
        *,
        target: BootTarget | None = None,
        enabled: BootPersistence | None = None,
        mode: BootMode | None = None,
    ) -> BootOverride:
        """Like `submit_boot_override` but awaits the VM patch and the stored record (Redfish)."""

    # --- serial console ---------------------------------------------------------------------
    def open_console(self, output: Output, state: StateListener) -> Console:
        """The VM's serial console (see vmbmc.machine.console); it follows power cycles until
        closed. Raises NotSupported where the back end has none."""
        raise NotSupported("this machine has no serial console")

    # --- virtual media: one CD-ROM (vmbmc.machine.media); back ends without it say so -----------
    def virtual_media(self) -> MediaStatus | None:
        """The CD-ROM as stored, from the cache; None when this back end has no virtual media."""
        return None

    async def insert_media(self, requester: Requester, image: str) -> asyncio.Future[MediaStatus]:
        """Record the request, start importing `image` and attach it; the future resolves with the final
        status (inserted, or phase Failed with CDI's message). Raises Invalid (bad URL), Refused (media
        already in or importing), Busy (another insert/eject running)."""
        raise NotSupported("virtual media is not available on this back end")

    async def eject_media(self, requester: Requester) -> MediaStatus:
        """Detach and delete the medium; an empty drive is a success with no call."""
        raise NotSupported("virtual media is not available on this back end")

    # --- firmware settings: boot mode and Secure Boot (vmbmc.machine.firmware) -------------------
    def firmware(self) -> FirmwareStatus | None:
        """Pending (the VM's spec) and current (the running VMI's) settings, from the cache; None when this
        back end has no firmware settings."""
        return None

    async def set_firmware(self, requester: Requester, change: FirmwareChange) -> FirmwareSettings:
        """Record the request and patch the VM's spec (the next boot gets it); returns the pending settings
        at once. Raises FirmwareConflict (a combination KubeVirt cannot boot), Busy, BackendUnavailable."""
        raise NotSupported("firmware settings are not available on this back end")
    # --- the power history as the log views show it (vmbmc.machine.history) ----------------------
    def history(self) -> LogView:
        """The recorded transitions after the last clear, from the cache; empty where the back end
        records none."""
        return LogView()

    def clear_log(self, requester: Requester) -> asyncio.Future[LogEntry]:
        """Record a log clear (a request, the clear's time and an Event); never blocks. The future
        resolves with the clear's entry once it is stored, or with the MachineError. Every log view
        then hides the entries at or before it; Kubernetes Events stay. A second call with the same
        request id returns the first one's future."""
        raise NotSupported("this machine keeps no log")

    def watch_history(self, listener: Callable[[LogView], None]) -> Callable[[], None]:
        """Call `listener` (on the loop) with the new view whenever it changes; returns the call that
        stops it."""
        return lambda: None

    # --- where the Redfish event subscriptions are kept (vmbmc.machine.subscriptions) -------------
    def event_subscriptions(self) -> SubscriptionStore:
        """The store of this BMC's event subscriptions; a back end with nothing durable to keep them in
        gives one in this process's memory (the same one on every call)."""
        store = self.__dict__.get("_memory_subscriptions")
        if store is None:
            store = self.__dict__["_memory_subscriptions"] = MemoryStore()
        return store
