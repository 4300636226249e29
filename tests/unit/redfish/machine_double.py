"""A test double of `vmbmc.machine.api.Machine`: an in-memory VM with the power table of
`vmbmc.machine.power`.

Not production code: transitions finish after `transition_delay` seconds on the running loop, and
nothing talks to Kubernetes. Tests may set `busy` (raise Busy) or `fail_with` (raise that error
from `act`) to exercise the error mapping, and read `calls` to see what the BMC asked for.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
from typing import Any

from vmbmc.machine.api import Machine
from vmbmc.machine.errors import Busy, Invalid, MachineError, NotFound, NotSupported, Refused
from vmbmc.machine.history import LogEntry, LogView, cleared_entry, log_view
from vmbmc.machine.requests import requester_text
from vmbmc.machine.types import (
    ActionResult,
    BootMode,
    BootOverride,
    BootPersistence,
    BootTarget,
    Disk,
    Effect,
    Inventory,
    Nic,
    PowerAction,
    PowerState,
    PowerStatus,
    Requester,
)

DEFAULT_INVENTORY = Inventory(
    namespace="default",
    name="vm1",
    uuid="5f4c6c5e-1a1b-4c2d-9e8f-0123456789ab",
    cpus=2,
    memory_bytes=4 << 30,
    nics=(
        Nic(name="default", mac="52:54:00:12:34:56", model="virtio"),
        Nic(name="prov", mac="52:54:00:ab:cd:ef", model="e1000"),
    ),
    disks=(
        Disk(name="rootdisk", kind="disk", size_bytes=20 << 30, bus="virtio"),
        Disk(name="scratch", kind="disk", size_bytes=None),
        Disk(name="installer", kind="cdrom", size_bytes=700 << 20),
    ),
)


class FakeMachine(Machine):
    def __init__(
        self,
        inventory: Inventory = DEFAULT_INVENTORY,
        state: PowerState = PowerState.OFF,
        transition_delay: float = 0.05,
    ) -> None:
        self.vm = f"{inventory.namespace}/{inventory.name}"
        self.bmc = None
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:  # made before the loop runs (standalone `run()`)
            self.loop = None  # type: ignore[assignment]
        self._inventory: Inventory | None = inventory
        self._state = state
        self._override = BootOverride()
        self._lock = threading.Lock()
        self.transition_delay = transition_delay
        self.busy: float | None = None  # retry_after when set
        self.fail_with: MachineError | None = None
        self.stale = False
        self.calls: list[tuple[PowerAction, Requester]] = []
        self.boot_calls: list[Requester] = []
        # status.powerHistory as the controller writes it, and status.logClearedAt as a clear writes it
        self.power_history: list[dict[str, Any]] = []
        self.log_cleared: dict[str, Any] | None = None

    # --- test controls -----------------------------------------------------------------------
    def remove_vm(self) -> None:
        self._inventory = None

    def set_state(self, state: PowerState) -> None:
        self._state = state

    # --- reads -------------------------------------------------------------------------------
    def _require(self) -> Inventory:
        if self._inventory is None:
            raise NotFound(f"VirtualMachine {self.vm} not found")
        return self._inventory

    def power_status(self) -> PowerStatus:
        self._require()
        return PowerStatus(state=self._state, age=0.1, stale=self.stale)

    def boot_override(self) -> BootOverride:
        self._require()
        return self._override

    def inventory(self) -> Inventory:
        return self._require()

    def supported_boot_targets(self) -> tuple[BootTarget, ...]:
        inv = self._require()
        targets = [BootTarget.NONE, BootTarget.HDD]
        if inv.nics:
            targets.insert(1, BootTarget.PXE)
        if any(d.kind == "cdrom" for d in inv.disks):
            targets.append(BootTarget.CD)
        return tuple(targets)

    # --- actions -----------------------------------------------------------------------------
    def _decide(self, action: PowerAction) -> tuple[Effect, PowerState | None, PowerState | None]:
        """(effect, transitional state, final state) per the power table's Redfish column."""
        s = self._state
        if action is PowerAction.NMI:
            raise NotSupported("KubeVirt has no NMI")
        if s in (PowerState.POWERING_ON, PowerState.POWERING_OFF):
            if (action is PowerAction.ON and s is PowerState.POWERING_ON) or (
                action in (PowerAction.OFF, PowerAction.SHUTDOWN) and s is PowerState.POWERING_OFF
            ):
                return Effect.NONE, None, None
            raise Busy(f"VM is {s.value}", retry_after=2)
        if action is PowerAction.ON:
            if s is PowerState.ON:
                return Effect.NONE, None, None
            return Effect.CALLED, PowerState.POWERING_ON, PowerState.ON
        if action in (PowerAction.OFF, PowerAction.SHUTDOWN):
            if s is PowerState.OFF:
                return Effect.NONE, None, None
            if s is PowerState.PAUSED and action is PowerAction.SHUTDOWN:
                raise Refused("the VM is paused; a guest cannot shut down while paused")
            return Effect.CALLED, PowerState.POWERING_OFF, PowerState.OFF
        if action in (PowerAction.RESET, PowerAction.CYCLE, PowerAction.GRACEFUL_RESTART):
            if s is PowerState.PAUSED and action is PowerAction.GRACEFUL_RESTART:
                raise Refused("the VM is paused")
            if s is PowerState.OFF:
                return Effect.CALLED, PowerState.POWERING_ON, PowerState.ON
            return Effect.CALLED, PowerState.POWERING_ON, PowerState.ON
        if action is PowerAction.PAUSE:
            if s is PowerState.OFF:
                raise Refused("the VM is off")
            if s is PowerState.PAUSED:
                return Effect.NONE, None, None
            return Effect.CALLED, None, PowerState.PAUSED
        if action is PowerAction.RESUME:
            if s is PowerState.OFF:
                raise Refused("the VM is off")
            if s is PowerState.ON:
                return Effect.NONE, None, None
            return Effect.CALLED, None, PowerState.ON
        raise Invalid(f"unknown action {action}")

    def submit(self, action: PowerAction, requester: Requester) -> ActionResult:
        self._require()
        if self.busy is not None:
            raise Busy("busy (test)", retry_after=self.busy)
        effect, transitional, final = self._decide(action)
        self.calls.append((action, requester))
        if final is PowerState.ON and action is not PowerAction.RESUME and effect is Effect.CALLED:
            self._boot()
        if final is not None:
            if transitional is not None and self.transition_delay > 0:
                self._state = transitional
                asyncio.get_running_loop().call_later(self.transition_delay, self.set_state, final)
            else:
                self._state = final
        return ActionResult(action=action, effect=effect, request_id=requester.request_id)

    def _boot(self) -> None:
        """The VM boots: a Once override is used up (the real back end restores the boot order)."""
        if self._override.enabled is BootPersistence.ONCE:
            self._override = BootOverride(mode=self._override.mode)

    async def act(
        self, action: PowerAction, requester: Requester, *, settle_timeout: float = 30.0
    ) -> ActionResult:
        if self.fail_with is not None:
            raise self.fail_with
        deadline = asyncio.get_running_loop().time() + settle_timeout
        while True:
            try:
                return self.submit(action, requester)
            except Busy:
                if self.busy is not None or asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(0.01)

    def submit_boot_override(
        self,
        requester: Requester,
        *,
        target: BootTarget | None = None,
        enabled: BootPersistence | None = None,
        mode: BootMode | None = None,
    ) -> BootOverride:
        self._require()
        if target is not None and target not in self.supported_boot_targets():
            raise Invalid(f"boot target {target.value} is not supported by this VM")
        current = self._override
        new = BootOverride(
            target=target if target is not None else current.target,
            enabled=enabled if enabled is not None else current.enabled,
            mode=mode if mode is not None else current.mode,
        )
        if (
            target is not None
            and target is not BootTarget.NONE
            and enabled is None
            and new.enabled is BootPersistence.DISABLED
        ):
            new = BootOverride(target=new.target, enabled=BootPersistence.ONCE, mode=new.mode)
        self._override = new
        self.boot_calls.append(requester)
        return new

    async def set_boot_override(
        self,
        requester: Requester,
        *,
        target: BootTarget | None = None,
        enabled: BootPersistence | None = None,
        mode: BootMode | None = None,
    ) -> BootOverride:
        if self.fail_with is not None:
            raise self.fail_with
        return self.submit_boot_override(requester, target=target, enabled=enabled, mode=mode)

    # --- history -----------------------------------------------------------------------------
    def history(self) -> LogView:
        return log_view(self.power_history, self.log_cleared)

    def clear_log(self, requester: Requester) -> asyncio.Future[LogEntry]:
        future: asyncio.Future[LogEntry] = asyncio.get_running_loop().create_future()
        if self.fail_with is not None:
            future.set_exception(self.fail_with)
            return future
        who = requester_text(requester.protocol.value, requester.user, requester.client)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.log_cleared = {"time": now, "requestId": requester.request_id, "requester": who}
        entry = cleared_entry(self.log_cleared)
        assert entry is not None
        future.set_result(entry)
        return future

