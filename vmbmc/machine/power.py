"""The power-action table (docs/state-machine.md): action, observed state and protocol → what to do.

Pure: `decide` gets the state the BMC shows (observed state with the in-flight overlay applied) and
whether a restart is already under way, and answers with a `Decision`. The back end carries it out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vmbmc.machine.types import PowerAction, PowerState, Protocol


class KubeVirtCall(enum.StrEnum):
    """The KubeVirt subresource calls the table uses (never `softreboot`, never spec edits)."""

    START = "start"
    STOP_FORCE = "stop_force"  # stop, {"gracePeriod": 0}
    STOP_GRACEFUL = "stop"  # stop, the VM's grace period
    RESTART_FORCE = "restart_force"  # restart, {"gracePeriodSeconds": 0}
    RESTART_GRACEFUL = "restart"  # restart, no body
    PAUSE = "pause"  # VMI pause
    UNPAUSE = "unpause"  # VMI unpause


class Verdict(enum.StrEnum):
    CALL = "call"  # make `call`
    NOOP = "noop"  # success, no call (already there, or already being carried out)
    REFUSED = "refused"  # not possible in the present state (IPMI D5h, Redfish 409)
    BUSY = "busy"  # opposes a transition in progress; retry (IPMI C0h, Redfish wait then 503)
    NOT_SUPPORTED = "not_supported"  # no mapping onto KubeVirt (nmi)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    call: KubeVirtCall | None = None
    why: str = ""  # for a client: why refused / busy / nothing to do


# Event reason of a request, per action (the table's last column).
REQUEST_REASONS: dict[PowerAction, str] = {
    PowerAction.ON: "PowerOnRequested",
    PowerAction.OFF: "PowerOffRequested",
    PowerAction.SHUTDOWN: "ShutdownRequested",
    PowerAction.RESET: "ResetRequested",
    PowerAction.CYCLE: "PowerCycleRequested",
    PowerAction.GRACEFUL_RESTART: "RestartRequested",
    PowerAction.PAUSE: "PauseRequested",
    PowerAction.RESUME: "ResumeRequested",
    PowerAction.NMI: "NmiRequested",
}

RESTARTS = (PowerAction.RESET, PowerAction.CYCLE, PowerAction.GRACEFUL_RESTART)
_RESTART_CALL = {
    PowerAction.RESET: KubeVirtCall.RESTART_FORCE,
    PowerAction.CYCLE: KubeVirtCall.RESTART_FORCE,
    PowerAction.GRACEFUL_RESTART: KubeVirtCall.RESTART_GRACEFUL,
}

# What the BMC shows once a call was accepted, until the watch catches up.
CALL_SHOWS: dict[KubeVirtCall, PowerState] = {
    KubeVirtCall.START: PowerState.POWERING_ON,
    KubeVirtCall.STOP_FORCE: PowerState.POWERING_OFF,
    KubeVirtCall.STOP_GRACEFUL: PowerState.POWERING_OFF,
    KubeVirtCall.RESTART_FORCE: PowerState.POWERING_OFF,
    KubeVirtCall.RESTART_GRACEFUL: PowerState.POWERING_OFF,
    KubeVirtCall.PAUSE: PowerState.PAUSED,
    KubeVirtCall.UNPAUSE: PowerState.ON,
}


def _call(call: KubeVirtCall) -> Decision:
    return Decision(Verdict.CALL, call)


def _noop(why: str) -> Decision:
    return Decision(Verdict.NOOP, why=why)


def _refused(why: str) -> Decision:
    return Decision(Verdict.REFUSED, why=why)


def _busy(state: PowerState) -> Decision:
    return Decision(Verdict.BUSY, why=f"the VM is {state.value}; retry when the transition has settled")


def decide(
    action: PowerAction, state: PowerState, protocol: Protocol, *, restarting: bool = False
) -> Decision:
    """What `action` means in `state` (one table for IPMI and Redfish).

    `restarting` is true while a restart this BMC asked for is under way (the VMI being replaced), so
    a second reset/cycle is "already being carried out".
    """
    if action is PowerAction.NMI:
        return Decision(Verdict.NOT_SUPPORTED, why="KubeVirt has no way to inject an NMI into a VM")
    if action in RESTARTS and restarting:
        return _noop("a restart is already under way")
    if state is PowerState.UNKNOWN:
        # The VMI's node is lost: only a forced stop makes sense; everything else waits for KubeVirt.
        return _call(KubeVirtCall.STOP_FORCE) if action is PowerAction.OFF else _busy(state)
    if action is PowerAction.ON:
        return {
            PowerState.ON: _noop("the VM is already on"),
            PowerState.OFF: _call(KubeVirtCall.START),
            PowerState.PAUSED: _call(KubeVirtCall.UNPAUSE),
            PowerState.POWERING_ON: _noop("the VM is already powering on"),
        }.get(state) or _busy(state)
    if action is PowerAction.OFF:
        return {
            PowerState.ON: _call(KubeVirtCall.STOP_FORCE),
            PowerState.OFF: _noop("the VM is already off"),
            PowerState.PAUSED: _call(KubeVirtCall.STOP_FORCE),
            PowerState.POWERING_OFF: _noop("the VM is already powering off"),
        }.get(state) or _busy(state)
    if action is PowerAction.SHUTDOWN:
        return {
            PowerState.ON: _call(KubeVirtCall.STOP_GRACEFUL),
            PowerState.OFF: _noop("the VM is already off"),
            PowerState.PAUSED: _refused("the VM is paused: a paused guest cannot shut down; resume it first"),
            PowerState.POWERING_OFF: _noop("the VM is already powering off"),
        }.get(state) or _busy(state)
    if action in RESTARTS:
        if state is PowerState.ON:
            return _call(_RESTART_CALL[action])
        if state is PowerState.PAUSED:
            if action is PowerAction.GRACEFUL_RESTART:
                return _refused("the VM is paused: a paused guest cannot restart gracefully; resume it first")
            return _call(KubeVirtCall.RESTART_FORCE)
        if state is PowerState.OFF:
            # Redfish: a ResetType that ends in a restart ends On (DMTF); IPMI may answer D5h, and does.
            if protocol is Protocol.IPMI and action is not PowerAction.GRACEFUL_RESTART:
                return _refused("the VM is off: power cycle and reset need a powered-on chassis")
            return _call(KubeVirtCall.START)
        return _busy(state)
    if action is PowerAction.PAUSE:
        return {
            PowerState.ON: _call(KubeVirtCall.PAUSE),
            PowerState.OFF: _refused("the VM is off: there is nothing to pause"),
            PowerState.PAUSED: _noop("the VM is already paused"),
        }.get(state) or _busy(state)
    if action is PowerAction.RESUME:
        return {
            PowerState.ON: _noop("the VM is already running"),
            PowerState.OFF: _refused("the VM is off: there is nothing to resume"),
            PowerState.PAUSED: _call(KubeVirtCall.UNPAUSE),
        }.get(state) or _busy(state)
    raise ValueError(f"unknown power action {action!r}")


def reaches(call: KubeVirtCall, state: PowerState) -> bool:
    """True when `state` shows that `call` has taken effect (the watch caught up with it)."""
    if call is KubeVirtCall.START:
        return state in (PowerState.POWERING_ON, PowerState.ON, PowerState.PAUSED)
    if call in (KubeVirtCall.STOP_FORCE, KubeVirtCall.STOP_GRACEFUL):
        return state in (PowerState.POWERING_OFF, PowerState.OFF)
    if call is KubeVirtCall.PAUSE:
        return state is PowerState.PAUSED
    if call is KubeVirtCall.UNPAUSE:
        return state is PowerState.ON
    # Restarts: decided by the VMI UID changing (the back end tracks it), never by a state alone.
    return False


def verified(call: KubeVirtCall, state: PowerState, pending: str) -> bool:
    """After KubeVirt refused `call` (409), does a fresh read show its target anyway ("try then verify")?

    `state` is observed from the freshly read VM and VMI; `pending` is the VM's first pending
    stateChangeRequests action. Success when the VM is at the target, or clearly heading there, with
    no opposite request pending (KubeVirt's error text is never parsed).
    """
    if call is KubeVirtCall.START:
        return state in (PowerState.ON, PowerState.POWERING_ON) and pending != "Stop"
    if call in (KubeVirtCall.STOP_FORCE, KubeVirtCall.STOP_GRACEFUL):
        return state in (PowerState.OFF, PowerState.POWERING_OFF) and pending != "Start"
    if call is KubeVirtCall.PAUSE:
        return state is PowerState.PAUSED
    if call is KubeVirtCall.UNPAUSE:
        return state is PowerState.ON
    return False
