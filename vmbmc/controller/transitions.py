"""Power transitions of a VM as the controller records them, each exactly once: pure logic, no I/O, no clock.

`observe(vm, vmi)` takes the power state from `vmbmc.machine.observe` (the one the kbmc answers with) and
adds only the controller's evidence: which VMI, since when, how it ended, the boot settings;
`step(memory, observed, now)` compares it with what was last seen (`Memory`) and returns the transitions
in between; `vmbmc.controller.attribution` names their cause from the request records of every BMC of
the VM. `vmbmc.controller.recorder` does the I/O.

How KubeVirt tells the causes apart (and the emulator shows them the same way):
- guest shutdown: the VMI reaches `Succeeded` with no `deletionTimestamp` (or before it: the VM controller
  deletes a final VMI right after);
- VMI failed: phase `Failed`, likewise;
- stopped through the API (`virtctl stop`, or the BMC's `stop`): the VMI is deleted while the VM asks to stop
  (runStrategy `Halted` / `running: false`, or a `Stop` stateChangeRequest for that VMI);
- restarted (`virtctl restart`, or the BMC's `restart`): the VMI is deleted while a `Start` request is
  pending, and a new VMI (new UID) replaces it;
- VMI deleted: a deletion with none of these (`kubectl delete vmi`); runStrategy Always then starts a new one.
Evidence for how a VMI ended is kept from the first observation that shows it (`End`), because the
intermediate states may last milliseconds and a later observation may only show the VMI gone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from vmbmc.machine.history import Reason
from vmbmc.machine.observe import FINAL_PHASES, phase_time, run_strategy
from vmbmc.machine.observe import observe as power_state
from vmbmc.machine.types import PowerState

# Transition reasons (the Event reasons): the log views' vocabulary (vmbmc.machine.history).
POWERED_ON, POWERED_OFF, RESTARTED = Reason.POWERED_ON, Reason.POWERED_OFF, Reason.RESTARTED
PAUSED, RESUMED, BOOT_DEVICE_CHANGED = Reason.PAUSED, Reason.RESUMED, Reason.BOOT_DEVICE_CHANGED

# Power states (status.powerState, vmbmc.machine's vocabulary); only the settled ones are in powerHistory.
ON, OFF, PAUSED_STATE = PowerState.ON, PowerState.OFF, PowerState.PAUSED
POWERING_ON, POWERING_OFF, UNKNOWN = PowerState.POWERING_ON, PowerState.POWERING_OFF, PowerState.UNKNOWN
SETTLED = (ON, OFF, PAUSED_STATE)

# External causes: what KubeVirt shows, after "outside the BMC: ".
STOPPED_API = "stopped through the KubeVirt API"
STARTED_API = "started through the KubeVirt API"
RESTARTED_API = "restarted through the KubeVirt API"
PAUSED_API = "paused through the KubeVirt API"
RESUMED_API = "resumed through the KubeVirt API"
GUEST_SHUTDOWN = "guest shutdown"
VMI_FAILED = "VMI failed"
VMI_DELETED = "VMI deleted"
VM_DELETED = "VirtualMachine deleted"
BOOT_SPEC_CHANGED = "boot order changed in the VirtualMachine spec"

def transition_id(*parts: str) -> str:
    """First 16 hex digits of sha256 of what KubeVirt recorded: the BMC's id, the same on every re-list."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def vm_transition_id(*parts: str) -> str:
    """The VM's id of the same transition, salted with `vm/`: a BMC and its VM may share a name and a
    namespace, and their Events must not."""
    return transition_id("vm", *parts)


# --- reading KubeVirt's objects ----------------------------------------------------------------------


def _meta(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("metadata") or {}


def _status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("status") or {}


def _condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for c in _status(obj).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def _change_requests(vm: dict[str, Any]) -> list[dict[str, Any]]:
    return list(_status(vm).get("stateChangeRequests") or [])


def start_pending(vm: dict[str, Any]) -> bool:
    return any(r.get("action") == "Start" for r in _change_requests(vm))


def stop_asked(vm: dict[str, Any], vmi_uid: str) -> bool:
    """The VM asks for this VMI to stop: runStrategy Halted, or a Stop request naming it."""
    if run_strategy(vm) == "Halted":
        return True
    return any(r.get("action") == "Stop" and r.get("uid") in (None, vmi_uid) for r in _change_requests(vm))


def wants_running(vm: dict[str, Any]) -> bool:
    """KubeVirt will (re)create a VMI on its own: runStrategy Always or a pending Start request."""
    return run_strategy(vm) == "Always" or start_pending(vm)


def boot_spec(vm: dict[str, Any]) -> dict[str, Any]:
    """What decides the boot device: bootOrder of every disk and interface, and firmware.bootloader."""
    domain = ((((vm.get("spec") or {}).get("template") or {}).get("spec") or {}).get("domain")) or {}
    devices = domain.get("devices") or {}
    order = []
    for disk in devices.get("disks") or []:
        if disk.get("bootOrder") is not None:
            kind = "cdrom" if "cdrom" in disk else "disk"
            order.append([f"{kind}:{disk.get('name')}", int(disk["bootOrder"])])
    for iface in devices.get("interfaces") or []:
        if iface.get("bootOrder") is not None:
            order.append([f"interface:{iface.get('name')}", int(iface["bootOrder"])])
    order.sort(key=lambda d: (d[1], d[0]))
    return {"order": order, "bootloader": (domain.get("firmware") or {}).get("bootloader")}


def boot_hash(vm: dict[str, Any] | None) -> str:
    if vm is None:
        return ""
    raw = json.dumps(boot_spec(vm), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def describe_boot(vm: dict[str, Any]) -> str:
    spec = boot_spec(vm)
    order = ", ".join(f"{d[0]}={d[1]}" for d in spec["order"]) or "none"
    loader = spec["bootloader"]
    firmware = "UEFI" if isinstance(loader, dict) and "efi" in loader else "BIOS"
    return f"boot order {order}; firmware {firmware}"


# --- what is observed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class End:
    """How a VMI ended (or is ending), as first observed."""

    vmi: str
    cause: str  # one of the External causes above
    time: str  # final phase time when known, else the deletionTimestamp
    by_itself: bool  # the guest went down on its own (shutdown, failure), not through a deletion
    final: bool  # the VMI had reached Succeeded/Failed

    def merged(self, newer: End | None) -> End:
        """The first evidence decides the cause, with two exceptions: a later one may bring the time the
        guest was down, and a bare deletion may turn out to come with a VM request (the VM and the VMI
        are watched separately, so the VM's stop or restart request may arrive after the VMI's deletion)."""
        if newer is None or newer.vmi != self.vmi:
            return self
        out = self
        if self.cause == VMI_DELETED and newer.cause in (RESTARTED_API, STOPPED_API, VM_DELETED):
            out = replace(out, cause=newer.cause)
        if newer.final and not self.final:
            out = replace(out, time=newer.time, final=True)
        return out


def end_of(vm: dict[str, Any], vmi: dict[str, Any] | None) -> End | None:
    if vmi is None:
        return None
    uid = str(_meta(vmi).get("uid") or "")
    phase = _status(vmi).get("phase") or ""
    deleted = str(_meta(vmi).get("deletionTimestamp") or "")
    final = phase in FINAL_PHASES
    if not final and not deleted:
        return None
    final_at = phase_time(vmi, phase) if final else ""
    # A final phase at or before the deletion: the guest went down first and the VM controller then removed
    # the VMI (Always / RerunOnFailure do so at once). Timestamps have 1 s resolution: a tie counts as
    # "first" (a deletion takes the guest's shutdown time, which is seldom under a second on a real VM).
    if final and (not deleted or (final_at and final_at <= deleted and not start_pending(vm))):
        cause = VMI_FAILED if phase == "Failed" else GUEST_SHUTDOWN
        return End(uid, cause, final_at or deleted, by_itself=True, final=True)
    if _meta(vm).get("deletionTimestamp"):
        cause = VM_DELETED
    elif start_pending(vm):
        cause = RESTARTED_API
    elif stop_asked(vm, uid):
        cause = STOPPED_API
    else:
        cause = VMI_DELETED
    return End(uid, cause, final_at or deleted, by_itself=False, final=final)


@dataclass(frozen=True)
class Observed:
    """What KubeVirt shows now, reduced to what the history needs."""

    state: str  # On | Off | Paused | PoweringOn | PoweringOff | Unknown
    vmi: str = ""  # UID of the VMI that exists now ("" = none)
    running_since: str = ""  # when that VMI reached Running
    paused_since: str = ""  # lastTransitionTime of its Paused condition ("" = not paused)
    end: End | None = None  # how that VMI is ending, if it is
    boot: str = ""  # boot_hash of the VM
    boot_text: str = ""
    vm_uid: str = ""
    generation: int = 0
    run_strategy: str = ""
    wants_running: bool = False  # KubeVirt will start a VMI on its own (see `wants_running`)


def observe(vm: dict[str, Any] | None, vmi: dict[str, Any] | None) -> Observed:
    """The power state as the kbmc sees it (`vmbmc.machine.observe`) and the evidence the history needs.
    No VM (not yet, or gone): Unknown and no evidence; a VMI alone is not this BMC's machine."""
    state = power_state(vm, vmi)
    if vm is None:
        return Observed(state)
    base = Observed(
        state,
        boot=boot_hash(vm),
        boot_text=describe_boot(vm),
        vm_uid=str(_meta(vm).get("uid") or ""),
        generation=int(_meta(vm).get("generation") or 0),
        run_strategy=run_strategy(vm),
        wants_running=wants_running(vm),
    )
    if vmi is None:
        return base
    running_since = phase_time(vmi, "Running")
    paused_since = ""
    if state is PAUSED_STATE:
        paused = _condition(vmi, "Paused") or {}
        paused_since = str(paused.get("lastTransitionTime") or running_since)
    return replace(
        base,
        vmi=str(_meta(vmi).get("uid") or ""),
        end=end_of(vm, vmi),
        running_since=running_since,
        paused_since=paused_since,
    )


# --- what is remembered -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """The last settled state and the evidence collected since; also kept in the BMC's marker annotation."""

    state: str  # On | Off | Paused
    vmi: str = ""  # the VMI that state refers to (for Off: the one that ended, if any)
    paused_since: str = ""
    boot: str = ""
    end: End | None = None  # how `vmi` ended, when seen

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | None) -> Memory | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            end = data.get("end")
            memory = cls(
                state=str(data["state"]),
                vmi=str(data.get("vmi") or ""),
                paused_since=str(data.get("paused_since") or ""),
                boot=str(data.get("boot") or ""),
                end=End(**end) if isinstance(end, dict) else None,
            )
        except (ValueError, KeyError, TypeError):
            return None  # a marker we cannot read counts as none: the next observation starts afresh
        return memory if memory.state in SETTLED else None


@dataclass(frozen=True)
class Transition:
    id: str
    reason: str
    time: str
    from_state: str
    to_state: str
    external: str  # the External cause, used when no request accounts for it
    vmi: str = ""
    warning: bool = False
    aliases: tuple[str, ...] = ()  # ids of transitions that record the same thing (see `step`)
    attributable: bool = True  # False for failures: no request makes a VMI fail
    vm_id: str = ""  # the VM's id of it (`vm_transition_id`), which names its Event on the VM


def _start_ids(vmi: str) -> tuple[str, ...]:
    # A new VMI is recorded once, as PoweredOn or as Restarted, whichever the observations showed:
    # a restarted controller may see it differently and must not record it a second time.
    return (transition_id(vmi, POWERED_ON), transition_id(vmi, RESTARTED))


def _started(reason: str, vmi: str, time: str, from_state: str, external: str) -> Transition:
    return Transition(
        transition_id(vmi, reason),
        reason,
        time,
        from_state,
        ON,
        external,
        vmi,
        aliases=_start_ids(vmi),
        vm_id=vm_transition_id(vmi, reason),
    )


def _powered_off(memory: Memory, end: End | None, fallback: str, now: str) -> Transition:
    cause = end.cause if end else fallback
    failed = cause == VMI_FAILED
    return Transition(
        transition_id(memory.vmi, POWERED_OFF),
        POWERED_OFF,
        (end.time if end else "") or now,
        memory.state,
        OFF,
        cause,
        memory.vmi,
        warning=failed,
        attributable=not failed,
        vm_id=vm_transition_id(memory.vmi, POWERED_OFF),
    )


def _paused(vmi: str, since: str) -> Transition:
    return Transition(
        transition_id(vmi, PAUSED, since),
        PAUSED,
        since,
        ON,
        PAUSED_STATE,
        PAUSED_API,
        vmi,
        vm_id=vm_transition_id(vmi, PAUSED, since),
    )


def _resumed(vmi: str, since: str, now: str, to_state: str = ON) -> Transition:
    # KubeVirt drops the Paused condition on unpause and records no time for it: the id keeps the pause's
    # time (so it is the same for every observer); the entry's time is when we saw it.
    return Transition(
        transition_id(vmi, RESUMED, since),
        RESUMED,
        now,
        PAUSED_STATE,
        to_state,
        RESUMED_API,
        vmi,
        vm_id=vm_transition_id(vmi, RESUMED, since),
    )


def initial_memory(obs: Observed) -> Memory | None:
    """The first observation of a BMC: its state, no transition. A transitional state counts as the state
    being left, so the transition that completes it is recorded."""
    if obs.state in SETTLED and (obs.vmi or obs.state == OFF):
        return Memory(obs.state, obs.vmi, obs.paused_since, obs.boot, obs.end)
    if obs.state == POWERING_ON:
        return Memory(OFF, "", "", obs.boot)
    if obs.state == POWERING_OFF and obs.vmi:
        return Memory(ON, obs.vmi, "", obs.boot, obs.end)
    return None


def step(memory: Memory | None, obs: Observed, now: str) -> tuple[Memory | None, list[Transition]]:
    """The transitions from `memory` to `obs` (oldest first) and what to remember next."""
    if memory is None:
        return initial_memory(obs), []
    end = memory.end
    if obs.end is not None and obs.end.vmi == memory.vmi and memory.vmi:
        end = end.merged(obs.end) if end and end.vmi == memory.vmi else obs.end
    memory = replace(memory, end=end)
    if obs.state == OFF and end is not None and not end.by_itself and obs.wants_running and obs.vmi:
        # The final VMI looked as if it went down by itself (same-second timestamps), but we saw it
        # deleted first: KubeVirt replaces it, this is a restart under way, not a power-off.
        obs = replace(obs, state=POWERING_ON)
    found: list[Transition] = []
    if obs.state == OFF:
        if memory.state != OFF:
            fallback = STOPPED_API if obs.run_strategy == "Halted" else VMI_DELETED
            found.append(_powered_off(memory, end, fallback, now))
        new = Memory(OFF, obs.vmi or memory.vmi, "", obs.boot or memory.boot, end if end else obs.end)
    elif obs.state in (ON, PAUSED_STATE) and obs.vmi:
        # (Running with no VMI known: the VM's status is ahead of what this observer has of its VMI, e.g.
        # a cache not filled yet. The state stands; the history waits for the VMI that identifies it.)
        found += _to_running(memory, obs, end, now)
        # Evidence of how this very VMI is ending is kept: the VM's `ready` may lag a VMI that has failed
        # or shut down (the state still reads On), and the next observation may show it gone.
        kept = end if end is not None and end.vmi == obs.vmi else None
        new = Memory(obs.state, obs.vmi, obs.paused_since, obs.boot or memory.boot, kept)
    else:  # transitional or unknown: nothing settled yet, keep collecting evidence
        new = replace(memory, boot=obs.boot or memory.boot)
    if memory.boot and obs.boot and obs.boot != memory.boot:
        settled = new.state
        found.append(
            Transition(
                transition_id(obs.vm_uid, BOOT_DEVICE_CHANGED, str(obs.generation), obs.boot),
                BOOT_DEVICE_CHANGED,
                now,
                settled,
                settled,
                BOOT_SPEC_CHANGED + f" ({obs.boot_text})",
                obs.vmi,
                vm_id=vm_transition_id(obs.vm_uid, BOOT_DEVICE_CHANGED, str(obs.generation), obs.boot),
            )
        )
    return new, found


def _to_running(memory: Memory, obs: Observed, end: End | None, now: str) -> list[Transition]:
    found: list[Transition] = []
    since = obs.running_since or now
    # The VM stopped in between (the guest went down, or it was stopped) even if no observation showed it
    # Off: a power-off and a power-on, not a restart.
    stopped = end is not None and (end.by_itself or end.cause in (STOPPED_API, VM_DELETED))
    if memory.state == OFF or (memory.vmi != obs.vmi and stopped):
        if memory.state != OFF:
            found.append(_powered_off(memory, end, VMI_DELETED, now))
        again = end is not None and end.by_itself and _restarts_itself(obs.run_strategy, end)
        cause = f"started again by KubeVirt (runStrategy {obs.run_strategy})" if again else STARTED_API
        found.append(_started(POWERED_ON, obs.vmi, since, OFF, cause))
        if obs.state == PAUSED_STATE:
            found.append(_paused(obs.vmi, obs.paused_since))
        return found
    if memory.vmi != obs.vmi:
        cause = end.cause if end is not None else RESTARTED_API
        found.append(_started(RESTARTED, obs.vmi, since, memory.state, cause))
        if obs.state == PAUSED_STATE:
            found.append(_paused(obs.vmi, obs.paused_since))
        return found
    # The same VMI: only pause and resume.
    if memory.state == PAUSED_STATE and (obs.state == ON or obs.paused_since != memory.paused_since):
        found.append(_resumed(obs.vmi, memory.paused_since, now))
    if obs.state == PAUSED_STATE and (memory.state == ON or obs.paused_since != memory.paused_since):
        found.append(_paused(obs.vmi, obs.paused_since))
    return found


def _restarts_itself(strategy: str, end: End) -> bool:
    return strategy == "Always" or (strategy == "RerunOnFailure" and end.cause == VMI_FAILED)


def unrecorded(transitions: Sequence[Transition], history: Sequence[dict[str, Any]]) -> list[Transition]:
    """Drop what `powerHistory` already holds, under its id or an alias (each transition is
    recorded exactly once)."""
    known = {str(e.get("id")) for e in history}
    return [t for t in transitions if t.id not in known and not known.intersection(t.aliases)]


# --- conditions -----------------------------------------------------------------------------------------

_POWERED_ON_CONDITION = {
    ON: ("True", "Running", "the VM is running"),
    PAUSED_STATE: ("True", "Paused", "the VM is paused"),
    OFF: ("False", "Stopped", "the VM is off"),
    POWERING_ON: ("False", "PoweringOn", "the VM is starting"),
    POWERING_OFF: ("True", "PoweringOff", "the VM is stopping"),
    UNKNOWN: ("Unknown", "Unknown", "the VM's power state is not known"),
}


def powered_on_condition(state: str) -> tuple[str, str, str]:
    """(status, reason, message) of the PoweredOn condition."""
    return _POWERED_ON_CONDITION.get(state, _POWERED_ON_CONDITION[UNKNOWN])


def boot_override_pending(bmc: dict[str, Any], vmi_uid: str) -> tuple[str, str, str]:
    """BootOverridePending: a stored Once override not consumed yet, i.e. no VMI other than the one it was
    set under has appeared (the kbmc restores the boot order when one does)."""
    stored = _status(bmc).get("bootOverride") or {}
    pending = stored.get("enabled") == "Once" and stored.get("savedBootOrder") is not None
    if pending and (not vmi_uid or vmi_uid == stored.get("vmiUID")):
        target = stored.get("target") or "None"
        return "True", "OnceOverridePending", f"the next power-on boots from {target} once"
    return "False", "NoPendingOverride", "no one-time boot override is waiting"
