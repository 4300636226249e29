"""`Machine` on KubeVirt: decisions from the watch cache, calls through KubeVirt's subresources.

Everything runs on the hub's asyncio loop: reads and `submit*` look only at the cache and never await,
so one front end's request is decided before the next one is looked at; the API calls they lead to run
as tasks on the same loop.

In flight: after a call is accepted the BMC shows PoweringOn/PoweringOff (the "expected" overlay)
until the watch shows the call took effect, at most OVERLAY_SECONDS; so a second request, or an IPMI
retransmit with a new sequence number, is decided against the state being entered and calls nothing
twice. Requests with one request id are one request: the second gets the first one's answer.

Bounded: a request's KubeVirt call is sent, or sent again, only within CALL_BOUND_SECONDS of its record
being opened; a call that may have reached the API server is never sent again (docs/power-history.md).
A restarted process settles the `pending` records an earlier one left, and sends none of them again.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vmbmc.k8s.client import JSON_PATCH, NOT_SENT, ApiError
from vmbmc.k8s.informer import Informer, OwnWrites
from vmbmc.kubevirt.history import HistorySource
from vmbmc.kubevirt.media import MediaDrive
from vmbmc.kubevirt.records import RecordStore, subresource_path, vm_path
from vmbmc.kubevirt.requests import RequestLog
from vmbmc.machine import boot
from vmbmc.machine.api import Machine
from vmbmc.machine.console import Console, Output, StateListener
from vmbmc.machine.errors import (
    BackendUnavailable,
    Busy,
    Forbidden,
    Invalid,
    MachineError,
    NotFound,
    NotSupported,
    Refused,
    Unanswered,
)
from vmbmc.machine.history import LogEntry, LogView
from vmbmc.machine.inventory import inventory
from vmbmc.machine.media import EJECT_ACTION, INSERT_ACTION, MediaStatus
from vmbmc.machine.observe import observe, pending_change, vmi_alive, vmi_uid
from vmbmc.machine.power import (
    CALL_SHOWS,
    KubeVirtCall,
    Verdict,
    decide,
    reaches,
    verified,
)
from vmbmc.machine.requests import (
    BOOT_ACTION,
    CALL_BOUND_SECONDS,
    LATE_TEXT,
    LOG_CLEAR_ACTION,
    RESTORE_ACTION,
    kbmc_requester,
)
from vmbmc.machine.types import (
    ActionResult,
    BootMode,
    BootOverride,
    BootPersistence,
    BootTarget,
    Effect,
    Inventory,
    PowerAction,
    PowerState,
    PowerStatus,
    Protocol,
    Requester,
)

if TYPE_CHECKING:
    from vmbmc.kubevirt.hub import KubeVirtHub

log = logging.getLogger(__name__)

OVERLAY_SECONDS = 20.0  # how long an accepted call may show a transition the watch has not seen yet
DEDUP_SECONDS = 120.0  # how long a request id is remembered
DEDUP_MAX = 512
LATE_WATCH_SECONDS = 120.0  # how long an unanswered boot patch is watched for (the attribution window)
PATCH_RETRIES = 5

_CALLS: dict[KubeVirtCall, tuple[str, str, dict[str, Any] | None]] = {
    # call → (resource, subresource, body)
    KubeVirtCall.START: ("virtualmachines", "start", {}),
    KubeVirtCall.STOP_FORCE: ("virtualmachines", "stop", {"gracePeriod": 0}),
    KubeVirtCall.STOP_GRACEFUL: ("virtualmachines", "stop", {}),
    KubeVirtCall.RESTART_FORCE: ("virtualmachines", "restart", {"gracePeriodSeconds": 0}),
    KubeVirtCall.RESTART_GRACEFUL: ("virtualmachines", "restart", None),
    KubeVirtCall.PAUSE: ("virtualmachineinstances", "pause", {}),
    KubeVirtCall.UNPAUSE: ("virtualmachineinstances", "unpause", {}),
}
_RESTARTS = (KubeVirtCall.RESTART_FORCE, KubeVirtCall.RESTART_GRACEFUL)


@dataclass
class _InFlight:
    call: KubeVirtCall
    vmi_uid: str  # the VMI when the call was accepted (a restart is done once another one exists)
    deadline: float
    answered: bool = False  # KubeVirt accepted the call
    future: asyncio.Future[Any] | None = None  # its answer: a request decided against the overlay joins it


@dataclass
class _LatePatch:
    """A boot order patch that got no answer within the bound: it can only ever land as the version right
    after `vm` (its guard), and is undone if it does (docs/power-history.md)."""

    request_id: str
    vm: dict[str, Any]  # the version the patch was guarded by
    settings: tuple[Any, ...]  # the VM's boot settings once the patch is applied
    # monotonic: stop looking after the attribution window
    until: float = field(default_factory=lambda: time.monotonic() + LATE_WATCH_SECONDS)

    @property
    def resource_version(self) -> str:
        return str((self.vm.get("metadata") or {}).get("resourceVersion") or "")


@dataclass
class _BootAttempt:
    """What one boot override request has written so far, for its answer and its roll-back."""

    before: boot.StoredOverride | None = None  # the stored override when the request got the lock
    stored: boot.StoredOverride | None = None  # the stored override as this request last wrote it
    commit_sent: bool = False  # the commit write is sent and not answered yet
    deadline: float = 0.0  # loop time: the call bound
    late: _LatePatch | None = None  # the VM patch in flight, should it never be answered


@dataclass
class _Remembered:
    at: float
    result: ActionResult | None = None
    error: MachineError | None = None
    future: asyncio.Future[Any] | None = None
    boot: BootOverride | None = None


def machine_error(err: ApiError, what: str) -> MachineError:
    """One mapping of API answers onto the state machine's errors (409 is handled by the caller)."""
    if err.code == 404:
        return NotFound(f"{what} not found")
    if err.code in (401, 403):
        return Forbidden(f"the API server refused this BMC's identity for {what}: {err.message}")
    if err.code in (400, 422):
        return Invalid(f"KubeVirt refused the request for {what}: {err.message}")
    if err.code == 409:
        return Busy(f"{what} is changing state: {err.message}")
    return BackendUnavailable(f"the Kubernetes API is unavailable ({err.message})")


class KubeVirtMachine(Machine):
    def __init__(
        self,
        hub: KubeVirtHub,
        namespace: str,
        name: str,
        *,
        vms: Informer,
        vmis: Informer,
        store: RecordStore,
        bmc: str | None,
        pvcs: Informer | None = None,
    ) -> None:
        self.hub = hub
        self.api = hub.api
        self.loop = hub.loop
        self.namespace, self.name = namespace, name
        self.vm = f"{namespace}/{name}"
        self.bmc = bmc
        self.vms, self.vmis, self.pvcs = vms, vmis, pvcs
        self.store = store
        self.requests = RequestLog(store, hub.events, self.vm)
        self._inflight: _InFlight | None = None
        self._remembered: collections.OrderedDict[str, _Remembered] = collections.OrderedDict()
        self._boot_lock = asyncio.Lock()
        self._late_boot: list[_LatePatch] = []  # boot patches unanswered within the bound
        # While a boot request has stored its override and not yet committed it, reads show the stored
        # override as it was: a client that heard C0h never reads back a change it was not promised.
        self._boot_before: tuple[boot.StoredOverride | None] | None = None
        self._own_vm = OwnWrites(vms)  # our own last VM patch's answer, until the watch shows it
        self._changed = asyncio.Event()
        self._restoring: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.media = MediaDrive(self)
        self.log = HistorySource(store, self.requests, self.loop)
        vms.subscribe(name, self._on_change)
        vmis.subscribe(name, self._on_change)
        store.informer.subscribe(store.name, self._on_change)

    def open_console(self, output: Output, state: StateListener) -> Console:
        from vmbmc.kubevirt.console import KubeVirtConsole

        return KubeVirtConsole(self.api, self.vmis, self.namespace, self.name, output, state)

    def close(self) -> None:
        self.vms.unsubscribe(self.name, self._on_change)
        self.vmis.unsubscribe(self.name, self._on_change)
        self.store.informer.unsubscribe(self.store.name, self._on_change)
        self.log.close()
        for task in list(self._tasks):
            task.cancel()

    # --- cache ----------------------------------------------------------------------------
    def _on_change(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """On the loop, for every change of our VM, VMI or record holder."""
        self._changed.set()
        self._changed = asyncio.Event()
        self.check_late_boot()
        self.check_once_restore()

    async def wait_change(self, timeout: float) -> None:
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def _vm(self) -> dict[str, Any]:
        # Standalone mode: the record holder is the VM itself, so our annotation writes are VM versions too.
        own = self.store if self.store.kind == "VirtualMachine" else None
        vm = own.current() if own is not None else self._own_vm.current(self.name)
        if vm is None:
            raise NotFound(f"VirtualMachine {self.vm} not found")
        return vm

    def _note_vm(self, vm: dict[str, Any]) -> None:
        """Our own write's answer is the newest VM we know until the watch delivers it."""
        if self.store.kind == "VirtualMachine":
            self.store.note(vm)
        else:
            self._own_vm.note(vm)

    def _vmi(self) -> dict[str, Any] | None:
        return self.vmis.get(self.name)

    def _shown(self, observed: PowerState, vmi: dict[str, Any] | None) -> PowerState:
        """The observed state with the in-flight overlay applied."""
        flight = self._inflight
        if flight is None:
            return observed
        if time.monotonic() > flight.deadline:
            self._inflight = None
            return observed
        if flight.call in _RESTARTS:
            if vmi_alive(vmi) and vmi_uid(vmi) != flight.vmi_uid:
                self._inflight = None  # a new VMI: the restart has happened
                return observed
            return PowerState.POWERING_OFF
        if reaches(flight.call, observed):
            self._inflight = None
            return observed
        if flight.call in (KubeVirtCall.PAUSE, KubeVirtCall.UNPAUSE) and not flight.answered:
            return observed
        return CALL_SHOWS[flight.call]

    # --- reads ----------------------------------------------------------------------------
    def power_status(self) -> PowerStatus:
        vm, vmi = self._vm(), self._vmi()
        state = self._shown(observe(vm, vmi), vmi)
        return PowerStatus(
            state=state,
            age=max(self.vms.age(), self.vmis.age()),
            stale=self.vms.stale or self.vmis.stale,
            vmi_uid=vmi_uid(vmi) if vmi_alive(vmi) else "",
        )

    def boot_override(self) -> BootOverride:
        vm = self._vm()
        stored = self.store.override() if self._boot_before is None else self._boot_before[0]
        return boot.reported(vm, stored)

    def inventory(self) -> Inventory:
        pvcs = self.pvcs.objects if self.pvcs is not None else None
        return inventory(self._vm(), self._vmi(), pvcs)

    def supported_boot_targets(self) -> tuple[BootTarget, ...]:
        return boot.supported_targets(self._vm())

    # --- power ----------------------------------------------------------------------------
    def submit(self, action: PowerAction, requester: Requester) -> ActionResult:
        return self._submit(action, requester)[0]

    async def act(
        self, action: PowerAction, requester: Requester, *, settle_timeout: float = 30.0
    ) -> ActionResult:
        deadline = self.loop.time() + settle_timeout
        backoff = 0.2
        while True:
            try:
                result, future = self._submit(action, requester)
            except Busy:  # an API outage is not waited out: the client hears 503 at once
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    raise
                await self.wait_change(min(remaining, 0.5))
                continue
            if future is None:
                return result
            try:
                return await asyncio.shield(future)
            except Busy:
                # KubeVirt said busy after all (try then verify): back off, then decide again. Not woken
                # by watch events: our own record writes would make that a busy loop against the API.
                self._remembered.pop(requester.request_id, None)
                remaining = deadline - self.loop.time()
                if remaining <= 0:
                    raise
                await asyncio.sleep(min(remaining, backoff))
                backoff = min(backoff * 2, 2.0)

    def _remember(self, request_id: str) -> _Remembered | None:
        now = time.monotonic()
        while self._remembered:
            first = next(iter(self._remembered.values()))
            if now - first.at < DEDUP_SECONDS and len(self._remembered) <= DEDUP_MAX:
                break
            self._remembered.popitem(last=False)
        return self._remembered.get(request_id)

    def _submit(
        self, action: PowerAction, requester: Requester
    ) -> tuple[ActionResult, asyncio.Future[ActionResult] | None]:
        seen = self._remember(requester.request_id)
        if seen is not None:
            if seen.error is not None:
                raise seen.error
            assert seen.result is not None
            return seen.result, seen.future
        if self.vms.stale or self.vmis.stale:
            raise BackendUnavailable("the Kubernetes API is unreachable; the VM's state is not known now")
        vm, vmi = self._vm(), self._vmi()
        state = self._shown(observe(vm, vmi), vmi)
        restarting = self._inflight is not None and self._inflight.call in _RESTARTS
        decision = decide(action, state, requester.protocol, restarting=restarting)
        remembered = _Remembered(at=time.monotonic())
        if decision.verdict is Verdict.BUSY:
            raise Busy(decision.why)
        if decision.verdict in (Verdict.REFUSED, Verdict.NOT_SUPPORTED):
            cls = Refused if decision.verdict is Verdict.REFUSED else NotSupported
            remembered.error = cls(decision.why)
            self._remembered[requester.request_id] = remembered
            self._schedule(self.requests.open(requester, action.value, Effect.REFUSED, note=decision.why))
            raise remembered.error
        if decision.verdict is Verdict.NOOP:
            remembered.result = ActionResult(action, Effect.NONE, requester.request_id, decision.why)
            # "Already being carried out" by a call KubeVirt has not accepted yet: this request's answer
            # is that call's answer, so nobody hears success before KubeVirt accepted the call.
            remembered.future = self._unanswered_call(observe(vm, vmi), state)
            self._remembered[requester.request_id] = remembered
            self._schedule(self.requests.open(requester, action.value, Effect.NONE, note=decision.why))
            return remembered.result, remembered.future
        assert decision.call is not None
        self._inflight = _InFlight(decision.call, vmi_uid(vmi), time.monotonic() + OVERLAY_SECONDS)
        remembered.result = ActionResult(action, Effect.PENDING, requester.request_id)
        remembered.future = self._future()
        self._inflight.future = remembered.future
        self._remembered[requester.request_id] = remembered
        log.info(
            "power request accepted",
            extra={
                "vm": self.vm,
                "action": action.value,
                "call": decision.call.value,
                "state": state.value,
                "protocol": requester.protocol.value,
                "user": requester.user,
                "client": requester.client,
                "request_id": requester.request_id,
            },
        )
        self._schedule(self._carry_out(action, decision.call, requester, remembered.future))
        return remembered.result, remembered.future

    def answer(self, request_id: str) -> asyncio.Future[Any] | None:
        seen = self._remembered.get(request_id) or self._remembered.get(f"boot/{request_id}")
        return None if seen is None else seen.future

    def _unanswered_call(self, observed: PowerState, shown: PowerState) -> asyncio.Future[Any] | None:
        flight = self._inflight
        if flight is None or flight.answered or flight.future is None or flight.future.done():
            return None
        return flight.future if shown is not observed else None

    def _schedule(self, coro: Any) -> None:
        """Run `coro` as a task of this machine (cancelled by `close`)."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _future(self) -> asyncio.Future[Any]:
        """The answer to one request. An IPMI client hears its answer before the call is made, so nobody
        may await it: reading its exception here keeps asyncio from reporting it as lost."""
        future = self.loop.create_future()
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        return future

    async def _carry_out(
        self,
        action: PowerAction,
        call: KubeVirtCall,
        requester: Requester,
        future: asyncio.Future[ActionResult],
    ) -> None:
        # The bound starts when the request is recorded (after any Redfish settle wait): no call is sent,
        # or sent again, once it has passed.
        deadline = self.loop.time() + CALL_BOUND_SECONDS
        started = time.monotonic()
        try:
            try:  # the record first (before the call); a hung API server holds it for the bound at most
                async with asyncio.timeout(CALL_BOUND_SECONDS):  # inline: records keep their order
                    await self.requests.open(requester, action.value, Effect.PENDING, call=call)
            except TimeoutError as err:
                raise BackendUnavailable(
                    f"the request could not be recorded within {CALL_BOUND_SECONDS:g} s; "
                    "no KubeVirt call was made"
                ) from err
            effect = await self._call(call, requester, deadline)
        except MachineError as err:  # Unanswered: the call may have reached the API server
            outcome = Effect.UNKNOWN if isinstance(err, Unanswered) else Effect.FAILED
            if self._inflight is not None and self._inflight.call is call:
                self._inflight = None
            log.warning(
                "power request unanswered" if outcome is Effect.UNKNOWN else "power request failed",
                extra={
                    "vm": self.vm,
                    "action": action.value,
                    "call": call.value,
                    "error": err.message,
                    "request_id": requester.request_id,
                },
            )
            await self.requests.settle(requester, action.value, outcome, err.message)
            future.set_exception(err)
            return
        if self._inflight is not None and self._inflight.call is call:
            self._inflight.answered = True
            if effect is Effect.NONE:
                self._inflight = None
        log.info(
            "power request done",
            extra={
                "vm": self.vm,
                "action": action.value,
                "call": call.value,
                "effect": effect.value,
                "seconds": round(time.monotonic() - started, 4),
                "request_id": requester.request_id,
            },
        )
        await self.requests.settle(requester, action.value, effect)
        future.set_result(ActionResult(action, effect, requester.request_id))

    async def _call(self, call: KubeVirtCall, requester: Requester, deadline: float) -> Effect:
        """The KubeVirt call, sent only before `deadline` (loop time); on 409 re-read and decide: success
        (effect none), or Busy. A call that never reached the API server (no connection) or got a server
        error is sent again while time remains; one that may have reached it is never sent again:
        no answer by the deadline raises Unanswered."""
        resource, sub, body = _CALLS[call]
        what = f"VirtualMachine {self.vm}"
        path = subresource_path(self.namespace, self.name, resource, sub)
        delay, last = 0.1, ""
        while True:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                raise BackendUnavailable(
                    f"KubeVirt did not accept the call within {CALL_BOUND_SECONDS:g} s and it is not sent "
                    f"again ({last or 'no time left'})"
                )
            try:
                await self.api.request("PUT", path, body=body, retry=False, timeout=remaining)
                return Effect.CALLED
            except ApiError as err:
                if (err.code == 0 and err.reason != NOT_SENT) or err.code == 504:
                    raise Unanswered(
                        f"no answer from KubeVirt within {CALL_BOUND_SECONDS:g} s ({err.message}); the call "
                        "may still be carried out, and is not sent again"
                    ) from err
                if err.retryable:  # not sent, or answered with a server error: nothing was carried out
                    last = err.message
                    await asyncio.sleep(min(delay, max(0.0, deadline - self.loop.time())))
                    delay = min(delay * 2, 1.0)
                    continue
                if err.code == 404 and resource == "virtualmachineinstances":
                    # no VMI: the VM stopped meanwhile (or the VM is gone: find out)
                    if await self._fresh_vm(deadline) is None:
                        raise NotFound(f"{what} not found") from err
                    raise Busy(f"{what} is not running now") from err
                if err.code != 409:
                    raise machine_error(err, what) from err
            break
        vm = await self._fresh_vm(deadline)
        if vm is None:
            raise NotFound(f"{what} not found")
        vmi = await self._fresh_vmi(deadline)
        state = observe(vm, vmi)
        if verified(call, state, pending_change(vm)):
            return Effect.NONE
        if call in _RESTARTS and state is PowerState.OFF and requester.protocol is Protocol.REDFISH:
            # restart of a VM that turned out to be off: a Redfish restart ends On (DMTF)
            return await self._call(KubeVirtCall.START, requester, deadline)
        raise Busy(f"{what} is {state.value}; retry when the transition has settled")

    def _timeout(self, deadline: float | None) -> float:
        return 10.0 if deadline is None else max(0.1, deadline - self.loop.time())

    async def _fresh_vm(self, deadline: float | None = None) -> dict[str, Any] | None:
        try:
            return await self.api.request(
                "GET", vm_path(self.namespace, self.name), timeout=self._timeout(deadline)
            )
        except ApiError as err:
            if err.code == 404:
                return None
            raise machine_error(err, f"VirtualMachine {self.vm}") from err

    async def _fresh_vmi(self, deadline: float | None = None) -> dict[str, Any] | None:
        try:
            return await self.api.request(
                "GET",
                vm_path(self.namespace, self.name, "virtualmachineinstances"),
                timeout=self._timeout(deadline),
            )
        except ApiError as err:
            if err.code == 404:
                return None
            raise machine_error(err, f"VirtualMachineInstance {self.vm}") from err

    # --- restart ----------------------------------------------------------------------------
    def recover_requests(self) -> None:
        """Settle the records a previous kbmc process left `pending` (killed mid-request); none is
        sent again, whatever its age."""
        self._schedule(self._recover())

    async def _recover(self) -> None:
        await self.requests.recover(self._carried_out)
        await self._drop_failed_override()

    async def _drop_failed_override(self) -> None:
        """A stored override whose own request ended `failed` names a change the VM never got (the
        process died between storing it and patching the VM): clear it, as a roll-back would have. Its
        patch may still sit in a hung API server, guarded by the VM version we see now: it is watched
        for, and undone if it lands, as an unanswered patch of this process would be."""
        async with self._boot_lock:
            stored = self.store.override()
            if stored is None or not stored.request_id:
                return
            entry = next((r for r in self.store.requests() if r.get("id") == stored.request_id), None)
            if entry is None or entry.get("effect") != Effect.FAILED.value:
                return
            try:
                vm = self._vm()
                ops = boot.order_ops(vm, stored.target) + boot.mode_ops(vm, stored.mode)
                if ops:
                    late = boot.boot_settings(boot.applied(vm, ops))
                    self._late_boot.append(_LatePatch(stored.request_id, vm, late))
            except MachineError:
                pass  # no VM: nothing to watch
            try:
                await self.store.write_override(None)
            except ApiError as err:
                log.warning(
                    "could not clear a failed boot override", extra={"vm": self.vm, "error": err.message}
                )

    def _carried_out(self, entry: dict[str, Any]) -> bool:
        """Does what KubeVirt shows now prove that the request's call was accepted? A call is decided
        only when the VM was not yet where it leads, and KubeVirt changes the VM as it accepts it."""
        rid = entry.get("id")
        holder = self.store.current() or {}
        history = (holder.get("status") or {}).get("powerHistory") or []
        if any(h.get("requestId") == rid for h in history):
            return True  # the controller already credited a transition to it
        action = str(entry.get("action"))
        if action == BOOT_ACTION:  # stored first, then the VM patch: both must show it
            stored = self.store.override()
            if stored is None or stored.request_id != rid:
                return False
            try:
                return boot.in_effect(self._vm(), stored)
            except MachineError:
                return False
        if action in (INSERT_ACTION, EJECT_ACTION):
            return self.media.carried_out(action)
        if action == LOG_CLEAR_ACTION:
            return self.log.carried_out(str(rid))
        try:
            power = PowerAction(action)
            vm, vmi = self._vm(), self._vmi()
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

    # --- boot override ----------------------------------------------------------------------
    def submit_boot_override(
        self,
        requester: Requester,
        *,
        target: BootTarget | None = None,
        enabled: BootPersistence | None = None,
        mode: BootMode | None = None,
    ) -> BootOverride:
        return self._submit_boot(requester, target, enabled, mode)[0]

    async def set_boot_override(
        self,
        requester: Requester,
        *,
        target: BootTarget | None = None,
        enabled: BootPersistence | None = None,
        mode: BootMode | None = None,
    ) -> BootOverride:
        result, future = self._submit_boot(requester, target, enabled, mode)
        return result if future is None else await asyncio.shield(future)

    def _submit_boot(
        self,
        requester: Requester,
        target: BootTarget | None,
        enabled: BootPersistence | None,
        mode: BootMode | None,
    ) -> tuple[BootOverride, asyncio.Future[BootOverride] | None]:
        key = f"boot/{requester.request_id}"
        seen = self._remember(key)
        if seen is not None and seen.boot is not None:
            return seen.boot, seen.future
        if self.vms.stale:
            raise BackendUnavailable("the Kubernetes API is unreachable; cannot change the boot order now")
        vm = self._vm()
        plan = boot.plan_override(
            vm, self._stored_now(), vmi_uid(self._vmi()), target=target, enabled=enabled, mode=mode
        )  # raises NotSupported / Invalid at once
        future: asyncio.Future[Any] = self._future()
        self._remembered[key] = _Remembered(at=time.monotonic(), future=future, boot=plan.result)
        log.info(
            "boot override accepted",
            extra={
                "vm": self.vm,
                "target": plan.result.target.value,
                "enabled": plan.result.enabled.value,
                "mode": plan.result.mode.value,
                "protocol": requester.protocol.value,
                "user": requester.user,
                "client": requester.client,
                "request_id": requester.request_id,
            },
        )
        self._schedule(self._apply_boot(requester, target, enabled, mode, future, plan.result))
        return plan.result, future

    def _stored_now(self) -> boot.StoredOverride | None:
        return self.store.override()

    async def _apply_boot(
        self,
        requester: Requester,
        target: BootTarget | None,
        enabled: BootPersistence | None,
        mode: BootMode | None,
        future: asyncio.Future[BootOverride],
        shown: BootOverride,
    ) -> None:
        """Record the request, then store and patch within CALL_BOUND_SECONDS of the record's opening
        (as a power call: nothing of it is sent after the bound). The answer is the commit point's: the
        VM patch, or the record write when the VM already is as asked (docs/power-history.md)."""
        deadline = self.loop.time() + CALL_BOUND_SECONDS
        what = f"{shown.target.value}, {shown.enabled.value}, {shown.mode.value}"
        attempt = _BootAttempt()
        try:
            try:
                async with asyncio.timeout_at(deadline):  # the record and the wait for an earlier override
                    await self.requests.open(requester, BOOT_ACTION, Effect.PENDING, what=what)
                    await self._boot_lock.acquire()
            except TimeoutError as err:
                raise BackendUnavailable(
                    f"the boot override could not be recorded and started within {CALL_BOUND_SECONDS:g} s "
                    "(the API server, or an earlier boot request of this BMC, did not finish); nothing was "
                    "changed in the VM"
                ) from err
            try:
                result = await self._apply_boot_bounded(requester, target, enabled, mode, attempt, deadline)
            except MachineError:
                if attempt.late is not None:
                    self._late_boot.append(attempt.late)  # watched from now on: undone if it lands
                await self._roll_back_record(attempt)  # still holding the lock: no other override between
                raise
            finally:
                self._boot_before = None
                self._boot_lock.release()
        except MachineError as err:
            outcome = Effect.UNKNOWN if isinstance(err, Unanswered) else Effect.FAILED
            log.warning(
                "boot override unanswered" if outcome is Effect.UNKNOWN else "boot override failed",
                extra={"vm": self.vm, "error": err.message, "request_id": requester.request_id},
            )
            await self.requests.settle(requester, BOOT_ACTION, outcome, err.message)
            future.set_exception(err)
            return
        await self.requests.settle(requester, BOOT_ACTION, Effect.CALLED)
        future.set_result(result)

    async def _apply_boot_bounded(
        self,
        requester: Requester,
        target: BootTarget | None,
        enabled: BootPersistence | None,
        mode: BootMode | None,
        attempt: _BootAttempt,
        deadline: float,
    ) -> BootOverride:
        """`_apply_boot_locked` until `deadline`: a commit write still unanswered then may yet be carried
        out (Unanswered: `unknown`); anything else unfinished was certainly not (BackendUnavailable)."""
        attempt.before = self.store.override()
        attempt.stored = attempt.before
        attempt.deadline = deadline
        self._boot_before = (attempt.before,)
        try:
            async with asyncio.timeout_at(deadline):
                return await self._apply_boot_locked(requester, target, enabled, mode, attempt)
        except TimeoutError as err:
            if attempt.commit_sent:
                raise Unanswered(
                    f"no answer from the Kubernetes API within {CALL_BOUND_SECONDS:g} s; the change is not "
                    "sent again, and is undone should it still be carried out"
                ) from err
            attempt.late = None
            raise BackendUnavailable(
                f"the boot override could not be applied within {CALL_BOUND_SECONDS:g} s; nothing was "
                "changed in the VM"
            ) from err

    async def _roll_back_record(self, attempt: _BootAttempt) -> None:
        """Put the stored override back as it was when the request began (bounded; the kbmc's own record,
        not a change of the VM), so a record never names an override the VM did not get."""
        if attempt.stored == attempt.before:
            return
        try:
            async with asyncio.timeout(CALL_BOUND_SECONDS):
                await self.store.write_override(attempt.before)
        except (ApiError, TimeoutError):
            log.exception("could not roll back the boot override record", extra={"vm": self.vm})

    async def _apply_boot_locked(
        self,
        requester: Requester,
        target: BootTarget | None,
        enabled: BootPersistence | None,
        mode: BootMode | None,
        attempt: _BootAttempt,
    ) -> BootOverride:
        """Store the override (status first: a crash then leaves a record, never a lost backup), then
        patch the VM guarded by uid and resourceVersion; a stale read is re-read and re-planned. If the
        VM patch fails for good, the caller puts the record back: no half-applied override stays."""
        before = attempt.before
        vm: dict[str, Any] | None = self._vm()
        for tries in range(PATCH_RETRIES):
            if vm is None:
                raise NotFound(f"VirtualMachine {self.vm} not found")
            plan = boot.plan_override(
                vm,
                before,
                vmi_uid(self._vmi()),
                target=target,
                enabled=enabled,
                mode=mode,
                request_id=requester.request_id,
            )
            try:
                if plan.stored != attempt.stored:
                    if not plan.ops:  # the record is all that changes: its write is the commit point
                        attempt.commit_sent = True
                    await self.store.write_override(plan.stored)
                    attempt.commit_sent = False
                    attempt.stored = plan.stored
                    if self.store.kind == "VirtualMachine":
                        # the annotation write changed the VM's resourceVersion: patch that version
                        vm = self.store.current()
                        if vm is not None:
                            self._note_vm(vm)
                if plan.ops:
                    assert vm is not None
                    await self._patch_vm_once(vm, plan.ops, requester, attempt)
                return plan.result
            except ApiError as err:
                attempt.commit_sent = False  # answered: it was not carried out
                if err.code in (409, 422) and tries < PATCH_RETRIES - 1:
                    vm = await self._fresh_vm()  # changed since we read it: read again, plan again
                    continue
                raise machine_error(err, f"VirtualMachine {self.vm}") from err
        raise Busy(f"VirtualMachine {self.vm} keeps changing; retry")

    async def _patch_vm_once(
        self, vm: dict[str, Any], ops: list[dict[str, Any]], requester: Requester, attempt: _BootAttempt
    ) -> None:
        """The boot order patch, guarded by `vm`'s resourceVersion, so it can only ever apply as the
        version right after `vm`. Sent again only while it certainly never reached the API server (no
        connection) or was answered with a server error; one that may have reached it and is not
        answered is never sent again (the caller's bound ends it `unknown`)."""
        delay = 0.1
        while True:
            attempt.commit_sent = True
            attempt.late = _LatePatch(requester.request_id, vm, boot.boot_settings(boot.applied(vm, ops)))
            try:
                self._note_own_patch(
                    vm,
                    await self.api.request(
                        "PATCH",
                        vm_path(self.namespace, self.name),
                        # kube-apiserver gives up on a request it has not finished by then (queued by
                        # priority and fairness, or waiting on etcd); it narrows a late apply, not more
                        params={"timeout": f"{max(1, math.ceil(attempt.deadline - self.loop.time()))}s"},
                        body=boot.guard_ops(vm) + ops,
                        content_type=JSON_PATCH,
                        retry=False,
                    ),
                )
                attempt.commit_sent, attempt.late = False, None
                return
            except ApiError as err:
                if (err.code == 0 and err.reason != NOT_SENT) or err.code == 504:
                    raise Unanswered(  # may have been carried out: never sent again
                        f"no answer from the Kubernetes API ({err.message}); the change is not sent again, "
                        "and is undone should it still be carried out"
                    ) from err
                attempt.commit_sent, attempt.late = False, None
                if not err.retryable:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _note_own_patch(self, guarded_by: dict[str, Any], written: dict[str, Any]) -> None:
        """Our own VM patch was answered: the version after `guarded_by` is ours, so no late patch guarded
        by that same version can land any more."""
        rv = str((guarded_by.get("metadata") or {}).get("resourceVersion") or "")
        self._late_boot = [late for late in self._late_boot if late.resource_version != rv]
        self._note_vm(written)

    # --- a boot order patch that came late ------------------------------------------------------
    def check_late_boot(self) -> None:
        """On the loop, for every change: a boot patch that got no answer within the bound can only
        land as the VM version right after the one it was guarded by. The first newer version tells:
        if it carries exactly that patch's boot settings, the patch came late and is undone (as this
        BMC's own recorded request); otherwise it can never land any more."""
        if not self._late_boot:
            return
        try:
            vm = self._vm()
        except NotFound:
            self._late_boot = []
            return
        rv = str((vm.get("metadata") or {}).get("resourceVersion") or "")
        now = time.monotonic()
        keep: list[_LatePatch] = []
        for late in self._late_boot:
            if now > late.until:
                continue  # beyond the attribution window: stop looking
            if rv == late.resource_version:
                keep.append(late)
                continue
            settings = boot.boot_settings(vm)
            if settings == late.settings != boot.boot_settings(late.vm):
                self._schedule(self._undo_late_boot(late))
        self._late_boot = keep

    async def _undo_late_boot(self, late: _LatePatch) -> None:
        """Put the VM's boot order and firmware back as they were before the late patch, recorded first
        as a request of the kbmc's own (protocol kbmc), so its BootDeviceChanged names the BMC."""
        undoer = kbmc_requester(f"{late.request_id}-undo")
        saved = boot.StoredOverride(
            saved_boot_order=boot.saved_boot_order(late.vm), saved_firmware=boot.bootloader(late.vm)
        )
        log.warning(
            "boot override came late; undoing it", extra={"vm": self.vm, "request_id": late.request_id}
        )
        try:
            async with asyncio.timeout(CALL_BOUND_SECONDS):
                await self.requests.open(
                    undoer,
                    RESTORE_ACTION,
                    Effect.PENDING,
                    what=f"boot override {late.request_id} {LATE_TEXT}; put back",
                )
                async with self._boot_lock:
                    for tries in range(PATCH_RETRIES):
                        vm = self._vm() if tries == 0 else await self._fresh_vm()
                        if vm is None:
                            break
                        ops = boot.restore_ops(vm, saved)
                        if not ops:
                            break
                        try:
                            await self._patch_vm(vm, ops)
                            break
                        except ApiError as err:
                            if err.code not in (409, 422) or tries == PATCH_RETRIES - 1:
                                raise machine_error(err, f"VirtualMachine {self.vm}") from err
        except (MachineError, TimeoutError) as err:
            text = err.message if isinstance(err, MachineError) else f"not done in {CALL_BOUND_SECONDS:g} s"
            await self.requests.settle(undoer, RESTORE_ACTION, Effect.FAILED, text)
            return
        await self.requests.settle(undoer, RESTORE_ACTION, Effect.CALLED)

    async def _patch_vm(self, vm: dict[str, Any], ops: list[dict[str, Any]]) -> None:
        self._note_vm(
            await self.api.request(
                "PATCH",
                vm_path(self.namespace, self.name),
                body=boot.guard_ops(vm) + ops,
                content_type=JSON_PATCH,
            )
        )

    # --- virtual media (vmbmc.kubevirt.media) -------------------------------------------------
    def virtual_media(self) -> MediaStatus:
        return self.media.status()

    async def insert_media(self, requester: Requester, image: str) -> asyncio.Future[MediaStatus]:
        return await self.media.insert(requester, image)

    async def eject_media(self, requester: Requester) -> MediaStatus:
        return await self.media.eject(requester)

    # --- the power history's log views (vmbmc.kubevirt.history) --------------------------------------
    def history(self) -> LogView:
        return self.log.view()

    def clear_log(self, requester: Requester) -> asyncio.Future[LogEntry]:
        return self.log.clear(requester)

    def watch_history(self, listener: Callable[[LogView], None]) -> Callable[[], None]:
        return self.log.watch(listener)

    # --- Once restore -------------------------------------------------------------------------
    def check_once_restore(self) -> None:
        """On the loop: a Once override whose VMI has been replaced is consumed; put the order back."""
        if self._restoring is not None and not self._restoring.done():
            return
        stored = self.store.override()
        vmi = self._vmi()
        if stored is None or not stored.pending_once or vmi is None or vmi_uid(vmi) == stored.vmi_uid:
            return
        self._restoring = self.loop.create_task(self._restore_once())
        self._tasks.add(self._restoring)
        self._restoring.add_done_callback(self._tasks.discard)

    async def _restore_once(self) -> None:
        """Put the boot order back. The patch is this BMC's own request (protocol kbmc), recorded before
        it is made, so the BootDeviceChanged it causes is attributed to the BMC and names the override."""
        async with self._boot_lock:
            restorer: Requester | None = None
            for attempt in range(PATCH_RETRIES):
                stored = self.store.override()
                vmi = self._vmi()
                if stored is None or not stored.pending_once or vmi is None or vmi_uid(vmi) == stored.vmi_uid:
                    return
                try:
                    vm = self._vm() if attempt == 0 else await self._fresh_vm()
                    if vm is None:
                        return
                    ops = boot.restore_ops(vm, stored)
                    if ops:
                        if restorer is None:
                            restorer = kbmc_requester(restore_id(stored, vmi_uid(vmi)))
                            await self.requests.open(
                                restorer,
                                RESTORE_ACTION,
                                Effect.PENDING,
                                what=f"one-time override {stored.request_id or '?'} was used",
                            )
                        await self._patch_vm(vm, ops)
                    await self.store.write_override(None)
                    if restorer is not None:
                        await self.requests.settle(restorer, RESTORE_ACTION, Effect.CALLED)
                    log.info(
                        "Once boot override consumed; boot order restored",
                        extra={"vm": self.vm, "vmi_uid": vmi_uid(vmi), "target": stored.target.value},
                    )
                    return
                except (ApiError, MachineError) as err:
                    log.warning(
                        "boot order restore failed; retrying",
                        extra={"vm": self.vm, "error": str(err), "attempt": attempt + 1},
                    )
                    if attempt == PATCH_RETRIES - 1 and restorer is not None:
                        await self.requests.settle(restorer, RESTORE_ACTION, Effect.FAILED, str(err))
                        return
                    await asyncio.sleep(0.2 * (attempt + 1))


def _seconds(stamp: str) -> float:
    """An RFC 3339 time in whole seconds (KubeVirt records whole seconds); 0 when unreadable."""
    try:
        return float(int(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()))
    except ValueError:
        return 0.0


def restore_id(stored: boot.StoredOverride, vmi: str) -> str:
    """The restore's request id: the override's, marked, so the records show which override it ends; the
    same for every attempt and every kbmc process (a retried record replaces itself)."""
    return f"{stored.request_id or 'override'}-restore-{vmi[:8]}"
