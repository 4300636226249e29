"""Power on KubeVirt: decisions from the watch cache, calls through KubeVirt's subresources.

Reads and `submit` look only at the cache and never await, so one front end's request is decided before
the next one is looked at; the calls they lead to run as tasks on the same loop.

In flight: after a call is accepted the BMC shows PoweringOn/PoweringOff (the "expected" overlay)
until the watch shows the call took effect, at most OVERLAY_SECONDS; so a second request, or an IPMI
retransmit with a new sequence number, is decided against the state being entered and calls nothing
twice.

Bounded: a request's KubeVirt call is sent, or sent again, only within CALL_BOUND_SECONDS of its record
being opened; a call that may have reached the API server is never sent again (docs/power-history.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from vmbmc.k8s.client import NOT_SENT, ApiError
from vmbmc.kubevirt.answers import Answers, Remembered
from vmbmc.kubevirt.errors import machine_error
from vmbmc.kubevirt.records import subresource_path
from vmbmc.kubevirt.vm import KubeVirtVm
from vmbmc.machine.errors import (
    BackendUnavailable,
    Busy,
    MachineError,
    NotFound,
    NotSupported,
    Refused,
    Unanswered,
)
from vmbmc.machine.observe import observe, pending_change, vmi_alive, vmi_uid
from vmbmc.machine.power import CALL_SHOWS, KubeVirtCall, Verdict, decide, reaches, verified
from vmbmc.machine.requests import CALL_BOUND_SECONDS
from vmbmc.machine.types import (
    ActionResult,
    Effect,
    PowerAction,
    PowerState,
    PowerStatus,
    Protocol,
    Requester,
)

log = logging.getLogger(__name__)

OVERLAY_SECONDS = 20.0  # how long an accepted call may show a transition the watch has not seen yet

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


class PowerControl:
    """The power half of a KubeVirtMachine: `submit`, `act` and the state they are decided against."""

    def __init__(self, vm: KubeVirtVm, answers: Answers) -> None:
        self.vm = vm
        self.answers = answers
        self._inflight: _InFlight | None = None

    # --- reads ----------------------------------------------------------------------------
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

    def status(self) -> PowerStatus:
        vm, vmi = self.vm.current(), self.vm.vmi()
        state = self._shown(observe(vm, vmi), vmi)
        return PowerStatus(
            state=state,
            age=max(self.vm.vms.age(), self.vm.vmis.age()),
            stale=self.vm.vms.stale or self.vm.vmis.stale,
            vmi_uid=vmi_uid(vmi) if vmi_alive(vmi) else "",
        )

    # --- requests ---------------------------------------------------------------------------
    def submit(self, action: PowerAction, requester: Requester) -> ActionResult:
        return self._submit(action, requester)[0]

    async def act(
        self, action: PowerAction, requester: Requester, *, settle_timeout: float = 30.0
    ) -> ActionResult:
        loop = self.vm.loop
        deadline = loop.time() + settle_timeout
        backoff = 0.2
        while True:
            try:
                result, future = self._submit(action, requester)
            except Busy:  # an API outage is not waited out: the client hears 503 at once
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise
                await self.vm.wait_change(min(remaining, 0.5))
                continue
            if future is None:
                return result
            try:
                return await asyncio.shield(future)
            except Busy:
                # KubeVirt said busy after all (try then verify): back off, then decide again. Not woken
                # by watch events: our own record writes would make that a busy loop against the API.
                self.answers.forget(requester.request_id)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise
                await asyncio.sleep(min(remaining, backoff))
                backoff = min(backoff * 2, 2.0)

    def _submit(
        self, action: PowerAction, requester: Requester
    ) -> tuple[ActionResult, asyncio.Future[ActionResult] | None]:
        seen = self.answers.get(requester.request_id)
        if seen is not None:
            if seen.error is not None:
                raise seen.error
            assert seen.result is not None
            return seen.result, seen.future
        if self.vm.vms.stale or self.vm.vmis.stale:
            raise BackendUnavailable("the Kubernetes API is unreachable; the VM's state is not known now")
        vm, vmi = self.vm.current(), self.vm.vmi()
        state = self._shown(observe(vm, vmi), vmi)
        restarting = self._inflight is not None and self._inflight.call in _RESTARTS
        decision = decide(action, state, requester.protocol, restarting=restarting)
        remembered = Remembered(at=time.monotonic())
        requests = self.vm.requests
        if decision.verdict is Verdict.BUSY:
            raise Busy(decision.why)
        if decision.verdict in (Verdict.REFUSED, Verdict.NOT_SUPPORTED):
            cls = Refused if decision.verdict is Verdict.REFUSED else NotSupported
            remembered.error = cls(decision.why)
            self.answers.put(requester.request_id, remembered)
            self.vm.spawn(requests.open(requester, action.value, Effect.REFUSED, note=decision.why))
            raise remembered.error
        if decision.verdict is Verdict.NOOP:
            remembered.result = ActionResult(action, Effect.NONE, requester.request_id, decision.why)
            # "Already being carried out" by a call KubeVirt has not accepted yet: this request's answer
            # is that call's answer, so nobody hears success before KubeVirt accepted the call.
            remembered.future = self._unanswered_call(observe(vm, vmi), state)
            self.answers.put(requester.request_id, remembered)
            self.vm.spawn(requests.open(requester, action.value, Effect.NONE, note=decision.why))
            return remembered.result, remembered.future
        assert decision.call is not None
        self._inflight = _InFlight(decision.call, vmi_uid(vmi), time.monotonic() + OVERLAY_SECONDS)
        remembered.result = ActionResult(action, Effect.PENDING, requester.request_id)
        remembered.future = self.vm.future()
        self._inflight.future = remembered.future
        self.answers.put(requester.request_id, remembered)
        log.info(
            "power request accepted",
            extra={
                "vm": self.vm.ref,
                "action": action.value,
                "call": decision.call.value,
                "state": state.value,
                "protocol": requester.protocol.value,
                "user": requester.user,
                "client": requester.client,
                "request_id": requester.request_id,
            },
        )
        self.vm.spawn(self._carry_out(action, decision.call, requester, remembered.future))
        return remembered.result, remembered.future

    def _unanswered_call(self, observed: PowerState, shown: PowerState) -> asyncio.Future[Any] | None:
        flight = self._inflight
        if flight is None or flight.answered or flight.future is None or flight.future.done():
            return None
        return flight.future if shown is not observed else None

    # --- the KubeVirt call ------------------------------------------------------------------
    async def _carry_out(
        self,
        action: PowerAction,
        call: KubeVirtCall,
        requester: Requester,
        future: asyncio.Future[ActionResult],
    ) -> None:
        # The bound starts when the request is recorded (after any Redfish settle wait): no call is sent,
        # or sent again, once it has passed.
        deadline = self.vm.loop.time() + CALL_BOUND_SECONDS
        started = time.monotonic()
        requests = self.vm.requests
        try:
            try:  # the record first (before the call); a hung API server holds it for the bound at most
                async with asyncio.timeout(CALL_BOUND_SECONDS):  # inline: records keep their order
                    await requests.open(requester, action.value, Effect.PENDING, call=call)
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
                    "vm": self.vm.ref,
                    "action": action.value,
                    "call": call.value,
                    "error": err.message,
                    "request_id": requester.request_id,
                },
            )
            await requests.settle(requester, action.value, outcome, err.message)
            future.set_exception(err)
            return
        if self._inflight is not None and self._inflight.call is call:
            self._inflight.answered = True
            if effect is Effect.NONE:
                self._inflight = None
        log.info(
            "power request done",
            extra={
                "vm": self.vm.ref,
                "action": action.value,
                "call": call.value,
                "effect": effect.value,
                "seconds": round(time.monotonic() - started, 4),
                "request_id": requester.request_id,
            },
        )
        await requests.settle(requester, action.value, effect)
        future.set_result(ActionResult(action, effect, requester.request_id))

    async def _call(self, call: KubeVirtCall, requester: Requester, deadline: float) -> Effect:
        """The KubeVirt call, sent only before `deadline` (loop time); on 409 re-read and decide: success
        (effect none), or Busy. A call that never reached the API server (no connection) or got a server
        error is sent again while time remains; one that may have reached it is never sent again:
        no answer by the deadline raises Unanswered."""
        resource, sub, body = _CALLS[call]
        what = f"VirtualMachine {self.vm.ref}"
        path = subresource_path(self.vm.namespace, self.vm.name, resource, sub)
        loop = self.vm.loop
        delay, last = 0.1, ""
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BackendUnavailable(
                    f"KubeVirt did not accept the call within {CALL_BOUND_SECONDS:g} s and it is not sent "
                    f"again ({last or 'no time left'})"
                )
            try:
                await self.vm.api.request("PUT", path, body=body, retry=False, timeout=remaining)
                return Effect.CALLED
            except ApiError as err:
                if (err.code == 0 and err.reason != NOT_SENT) or err.code == 504:
                    raise Unanswered(
                        f"no answer from KubeVirt within {CALL_BOUND_SECONDS:g} s ({err.message}); the call "
                        "may still be carried out, and is not sent again"
                    ) from err
                if err.retryable:  # not sent, or answered with a server error: nothing was carried out
                    last = err.message
                    await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                    delay = min(delay * 2, 1.0)
                    continue
                if err.code == 404 and resource == "virtualmachineinstances":
                    # no VMI: the VM stopped meanwhile (or the VM is gone: find out)
                    if await self.vm.fresh(deadline) is None:
                        raise NotFound(f"{what} not found") from err
                    raise Busy(f"{what} is not running now") from err
                if err.code != 409:
                    raise machine_error(err, what) from err
            break
        vm = await self.vm.fresh(deadline)
        if vm is None:
            raise NotFound(f"{what} not found")
        vmi = await self.vm.fresh_vmi(deadline)
        state = observe(vm, vmi)
        if verified(call, state, pending_change(vm)):
            return Effect.NONE
        if call in _RESTARTS and state is PowerState.OFF and requester.protocol is Protocol.REDFISH:
            # restart of a VM that turned out to be off: a Redfish restart ends On (DMTF)
            return await self._call(KubeVirtCall.START, requester, deadline)
        raise Busy(f"{what} is {state.value}; retry when the transition has settled")
