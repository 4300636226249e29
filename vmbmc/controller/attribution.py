"""Which request caused a power transition (docs/power-history.md): the oldest active, unconsumed request
whose action leads to it, made before it and at most REQUEST_WINDOW_SECONDS before it, looked for among
the request records of every BMC of the VM; none means `External`. Pure logic, no I/O, no clock:
`vmbmc.controller.transitions` finds the transitions, `vmbmc.controller.recorder` writes what this names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from vmbmc.controller import transitions as tr
from vmbmc.k8s.clock import parse as parse_time
from vmbmc.machine import media
from vmbmc.machine import requests as rq
from vmbmc.machine.history import EXTERNAL_PREFIX
from vmbmc.machine.types import Effect, PowerAction

REQUEST_WINDOW_SECONDS = 120

# Which request actions lead to which transitions (a request causes only what its action leads to).
LEADS_TO: dict[str, tuple[str, ...]] = {
    PowerAction.ON.value: (tr.POWERED_ON, tr.RESUMED),
    PowerAction.OFF.value: (tr.POWERED_OFF,),
    PowerAction.SHUTDOWN.value: (tr.POWERED_OFF,),
    PowerAction.RESET.value: (tr.RESTARTED, tr.POWERED_ON),
    PowerAction.CYCLE.value: (tr.RESTARTED, tr.POWERED_ON),
    PowerAction.GRACEFUL_RESTART.value: (tr.RESTARTED, tr.POWERED_ON),
    PowerAction.PAUSE.value: (tr.PAUSED,),
    PowerAction.RESUME.value: (tr.RESUMED,),
    rq.BOOT_ACTION: (tr.BOOT_DEVICE_CHANGED,),
    rq.RESTORE_ACTION: (tr.BOOT_DEVICE_CHANGED,),
    rq.FIRMWARE_ACTION: (tr.BOOT_DEVICE_CHANGED,),  # the boot mode and Secure Boot are the bootloader's
    # ejecting takes the virtual CD out of the VM, with the bootOrder a Cd override gave it
    media.EJECT_ACTION: (tr.BOOT_DEVICE_CHANGED,),
}



def find_request(
    transition: tr.Transition, requests: Sequence[dict[str, Any]], consumed: Iterable[str]
) -> dict[str, Any] | None:
    """The oldest active, unconsumed request whose action leads to the transition, made before it (to the
    second: KubeVirt records whole seconds) and at most REQUEST_WINDOW_SECONDS before it."""
    if not transition.attributable:
        return None
    at = parse_time(transition.time)
    if at is None:
        return None
    used = set(consumed)
    candidates = []
    for req in requests:
        if req.get("effect") not in rq.ACTIVE_EFFECTS or req.get("id") in used:
            continue
        if transition.reason not in LEADS_TO.get(str(req.get("action")), ()):
            continue
        made = parse_time(str(req.get("time") or ""))
        if made is None:
            continue
        made = made.replace(microsecond=0)
        if made > at or (at - made).total_seconds() > REQUEST_WINDOW_SECONDS:
            continue
        candidates.append((made, req))
    # A request that got no answer (unknown) yields to a later one whose call KubeVirt accepted: that call
    # was decided while the VM had not moved yet, so the unanswered one had not been carried out then.
    accepted = [made for made, req in candidates if req.get("effect") == Effect.CALLED.value]
    candidates = [
        (made, req)
        for made, req in candidates
        if req.get("effect") != Effect.UNKNOWN.value or not any(later > made for later in accepted)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda c: c[0])[1]  # min is stable: list order breaks ties


def late(req: dict[str, Any]) -> str:
    """`; came late: …` for a request whose call got no answer in time (effect unknown), else ""."""
    return f"; {rq.LATE_TEXT}" if req.get("effect") == Effect.UNKNOWN.value else ""


# The key under which the recorder tags each request record with "namespace/name" of the BMC that holds
# it (never written back: attribution looks at the requests of every BMC of the VM).
BMC_KEY = "bmc"


def requester_text(req: dict[str, Any], own: str = "") -> str:
    """`IPMI user admin from 10.244.1.7`, with `through BMC ns/name` when another BMC than `own` took it."""
    text = rq.requester_text(str(req.get("protocol")), str(req.get("user")), str(req.get("client")))
    through = str(req.get(BMC_KEY) or "")
    return f"{text} through BMC {through}" if through and through != own else text


def history_entry(transition: tr.Transition, req: dict[str, Any] | None, own: str = "") -> dict[str, Any]:
    """A `status.powerHistory` entry (newest last, at most 20) of the BMC `own` ("namespace/name"); its
    message is also its Event's message."""
    entry: dict[str, Any] = {
        "id": transition.id,
        "time": transition.time,
        "from": transition.from_state,
        "to": transition.to_state,
        "reason": transition.reason,  # what the log views render (vmbmc.machine.history)
    }
    if req is None:
        entry.update(cause="External", message=EXTERNAL_PREFIX + transition.external)
    else:
        who = requester_text(req, own)
        request_id = str(req.get("id"))
        message = f"by {who} (request {request_id}){late(req)}"
        entry.update(cause="Request", requester=who, requestId=request_id, message=message)
    return entry


def vm_message(entry: dict[str, Any], req: dict[str, Any] | None, own: str) -> str:
    """The message of the VM's Event of a transition: the BMC's, naming the BMC (a VM may have several)."""
    if req is None:
        return f"{entry['message']} (seen by BMC {own})"
    through = str(req.get(BMC_KEY) or own)
    who = rq.requester_text(str(req.get("protocol")), str(req.get("user")), str(req.get("client")))
    return f"by {who} through BMC {through} (request {req.get('id')}){late(req)}"


def attribute(
    transitions: Sequence[tr.Transition],
    requests: Sequence[dict[str, Any]],
    history: Sequence[dict[str, Any]],
    own: str = "",
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """History entries for `transitions` (oldest first), each with the request it names (None: External).
    `requests`: the records of every BMC of the VM, tagged with BMC_KEY; a request accounts for one
    transition only, in this BMC's own history (`history`)."""
    consumed = {str(e["requestId"]) for e in history if e.get("requestId")}
    out = []
    for t in transitions:
        req = find_request(t, requests, consumed)
        if req is not None:
            consumed.add(str(req.get("id")))
        out.append((history_entry(t, req, own), req))
    return out
