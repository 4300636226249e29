"""vmbmc.controller.transitions: (previous, current) → transitions, ids and causes, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from vmbmc.controller import attribution, conditions
from vmbmc.controller import transitions as tr
from vmbmc.machine import requests as rq
from vmbmc_devcluster.emulator.kubevirt_state import vm_status

T0 = "2025-05-01T10:00:00Z"
T1 = "2025-05-01T10:00:05Z"
T2 = "2025-05-01T10:00:10Z"
T3 = "2025-05-01T10:00:20Z"
NOW = "2025-05-01T10:01:00Z"


def vm(
    rs: str = "Always",
    *,
    requests: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    generation: int = 1,
    disk_order: int | None = 1,
    pxe_order: int | None = None,
    bootloader: dict[str, Any] | None = None,
) -> dict[str, Any]:
    disk: dict[str, Any] = {"name": "root", "disk": {}}
    if disk_order is not None:
        disk["bootOrder"] = disk_order
    iface: dict[str, Any] = {"name": "default", "masquerade": {}}
    if pxe_order is not None:
        iface["bootOrder"] = pxe_order
    domain: dict[str, Any] = {"devices": {"disks": [disk], "interfaces": [iface]}}
    if bootloader is not None:
        domain["firmware"] = {"bootloader": bootloader}
    meta: dict[str, Any] = {"name": "vm1", "namespace": "ns", "uid": "vm-uid", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = T2
    return {
        "metadata": meta,
        "spec": {"runStrategy": rs, "template": {"spec": {"domain": domain}}},
        "status": {"stateChangeRequests": requests} if requests else {},
    }


def vmi(
    uid: str,
    phase: str = "Running",
    *,
    running: str = T0,
    ended: str | None = None,
    deleted: str | None = None,
    paused: str | None = None,
) -> dict[str, Any]:
    stamps = [{"phase": "Pending", "phaseTransitionTimestamp": running}]
    if phase in ("Running", "Succeeded", "Failed"):
        stamps.append({"phase": "Running", "phaseTransitionTimestamp": running})
    if phase in ("Succeeded", "Failed"):
        stamps.append({"phase": phase, "phaseTransitionTimestamp": ended or T2})
    meta: dict[str, Any] = {"name": "vm1", "namespace": "ns", "uid": uid}
    if deleted:
        meta["deletionTimestamp"] = deleted
    conditions = []
    if phase == "Running" and not deleted:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": running})
    if paused:
        conditions.append({"type": "Paused", "status": "True", "lastTransitionTime": paused})
    return {
        "metadata": meta,
        "status": {"phase": phase, "phaseTransitionTimestamps": stamps, "conditions": conditions},
    }


START = {"action": "Start"}


def kv(vm_obj: dict[str, Any] | None, vmi_obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The VM with the status virt-controller writes for it and its VMI (the emulator's model of it):
    `status.ready`, `printableStatus`, conditions, the requests it has not consumed yet."""
    if vm_obj is None:
        return None
    pending = tr.wants_running(vm_obj) and (vmi_obj is None or tr.end_of(vm_obj, vmi_obj) is not None)
    return {**vm_obj, "status": vm_status(vm_obj, vmi_obj, NOW, start_expected=pending)}


def stop(uid: str) -> dict[str, Any]:
    return {"action": "Stop", "uid": uid}


# --- observe: what state KubeVirt shows ---------------------------------------------------------------

STATES = [
    ("no VM", None, None, "Unknown"),
    ("halted, no VMI", vm("Halted"), None, "Off"),
    ("always, no VMI yet", vm("Always"), None, "PoweringOn"),
    ("manual with a start request", vm("Manual", requests=[START]), None, "PoweringOn"),
    ("booting", vm(), vmi("a", "Scheduling"), "PoweringOn"),
    ("running", vm(), vmi("a"), "On"),
    ("paused", vm(), vmi("a", paused=T1), "Paused"),
    ("stopping (virtctl stop)", vm("Halted"), vmi("a", deleted=T1), "PoweringOff"),
    ("stopped, VMI still held", vm("Halted"), vmi("a", "Succeeded", deleted=T1, ended=T2), "Off"),
    ("guest shutdown, Manual keeps it", vm("Manual"), vmi("a", "Succeeded"), "Off"),
    # KubeVirt starts a new VMI at once: the BMC shows it powering on (the history still records the
    # power-off, when the new VMI runs; see the sequences below).
    ("guest shutdown, Always replaces it", vm("Always"), vmi("a", "Succeeded", ended=T1), "PoweringOn"),
    ("failed, Always replaces it", vm("Always"), vmi("a", "Failed"), "PoweringOn"),
    ("failed, Manual keeps it", vm("Manual"), vmi("a", "Failed"), "Off"),
    (
        "restart: old VMI down, Start pending",
        vm(requests=[stop("a"), START]),
        vmi("a", "Succeeded", deleted=T1, ended=T2),
        "PoweringOn",
    ),
    ("restart: between VMIs", vm("Manual", requests=[START]), None, "PoweringOn"),
    ("kubectl delete vmi, Always", vm(), vmi("a", "Succeeded", deleted=T1, ended=T2), "PoweringOn"),
]


@pytest.mark.parametrize(("what", "vm_obj", "vmi_obj", "state"), STATES, ids=[s[0] for s in STATES])
def test_observed_state(what: str, vm_obj: Any, vmi_obj: Any, state: str) -> None:
    assert tr.observe(kv(vm_obj, vmi_obj), vmi_obj).state == state


ENDS = [
    ("guest shutdown", vm("Manual"), vmi("a", "Succeeded"), tr.GUEST_SHUTDOWN, True),
    ("failed", vm("Manual"), vmi("a", "Failed"), tr.VMI_FAILED, True),
    (
        "shutdown then removed (tie)",
        vm(),
        vmi("a", "Succeeded", ended=T1, deleted=T1),
        tr.GUEST_SHUTDOWN,
        True,
    ),
    ("virtctl stop", vm("Halted"), vmi("a", deleted=T1), tr.STOPPED_API, False),
    ("manual stop request", vm("Manual", requests=[stop("a")]), vmi("a", deleted=T1), tr.STOPPED_API, False),
    ("restart", vm(requests=[stop("a"), START]), vmi("a", deleted=T1), tr.RESTARTED_API, False),
    ("kubectl delete vmi", vm(), vmi("a", deleted=T1), tr.VMI_DELETED, False),
    ("deleted before it ended", vm(), vmi("a", "Succeeded", deleted=T1, ended=T2), tr.VMI_DELETED, False),
    ("VM deleted", vm(deleting=True), vmi("a", deleted=T1), tr.VM_DELETED, False),
]


@pytest.mark.parametrize(("what", "vm_obj", "vmi_obj", "cause", "by_itself"), ENDS, ids=[e[0] for e in ENDS])
def test_end_cause(what: str, vm_obj: Any, vmi_obj: Any, cause: str, by_itself: bool) -> None:
    end = tr.end_of(vm_obj, vmi_obj)
    assert end is not None
    assert (end.cause, end.by_itself) == (cause, by_itself)


# --- step: sequences of observations → transitions -------------------------------------------------------

Obs = tuple[Any, Any]
SEQUENCES: list[tuple[str, list[Obs], list[tuple[str, str, str, str]]]] = [
    ("first observation invents nothing", [(vm(), vmi("a"))], []),
    ("same state twice", [(vm(), vmi("a")), (vm(), vmi("a"))], []),
    (
        "power on through the API",
        [(vm("Halted"), None), (vm(), None), (vm(), vmi("a", "Scheduled")), (vm(), vmi("a", running=T1))],
        [("PoweredOn", "Off", "On", tr.STARTED_API)],
    ),
    (
        "virtctl stop, every step seen",
        [(vm(), vmi("a")), (vm("Halted"), vmi("a", deleted=T1)), (vm("Halted"), None)],
        [("PoweredOff", "On", "Off", tr.STOPPED_API)],
    ),
    (
        "virtctl stop, only the end seen",
        [(vm(), vmi("a")), (vm("Halted"), None)],
        [("PoweredOff", "On", "Off", tr.STOPPED_API)],
    ),
    (
        "guest shutdown under Always: off, then KubeVirt starts it again",
        [
            (vm(), vmi("a")),
            (vm(), vmi("a", "Succeeded", ended=T1)),
            (vm(), vmi("a", "Succeeded", ended=T1, deleted=T1)),
            (vm(), None),
            (vm(), vmi("b", running=T2)),
        ],
        [
            ("PoweredOff", "On", "Off", tr.GUEST_SHUTDOWN),
            ("PoweredOn", "Off", "On", "started again by KubeVirt (runStrategy Always)"),
        ],
    ),
    (
        "guest shutdown seen, the gap missed",
        [(vm(), vmi("a")), (vm(), vmi("a", "Succeeded", ended=T1)), (vm(), vmi("b", running=T2))],
        [
            ("PoweredOff", "On", "Off", tr.GUEST_SHUTDOWN),
            ("PoweredOn", "Off", "On", "started again by KubeVirt (runStrategy Always)"),
        ],
    ),
    (
        "VMI failed under Manual stays off",
        [(vm("Manual"), vmi("a")), (vm("Manual"), vmi("a", "Failed"))],
        [("PoweredOff", "On", "Off", tr.VMI_FAILED)],
    ),
    (
        "restart, every step seen",
        [
            (vm(), vmi("a")),
            (vm(requests=[stop("a"), START]), vmi("a", deleted=T1)),
            (vm(requests=[stop("a"), START]), vmi("a", "Succeeded", deleted=T1, ended=T2)),
            (vm(requests=[START]), None),
            (vm(requests=[START]), vmi("b", "Pending")),
            (vm(), vmi("b", running=T3)),
        ],
        [("Restarted", "On", "On", tr.RESTARTED_API)],
    ),
    (
        "restart, only the new VMI seen",
        [(vm(), vmi("a")), (vm(), vmi("b", running=T3))],
        [("Restarted", "On", "On", tr.RESTARTED_API)],
    ),
    (
        "kubectl delete vmi under Always",
        [(vm(), vmi("a")), (vm(), vmi("a", deleted=T1)), (vm(), vmi("b", running=T3))],
        [("Restarted", "On", "On", tr.VMI_DELETED)],
    ),
    (
        "pause and resume",
        [(vm(), vmi("a")), (vm(), vmi("a", paused=T1)), (vm(), vmi("a"))],
        [("Paused", "On", "Paused", tr.PAUSED_API), ("Resumed", "Paused", "On", tr.RESUMED_API)],
    ),
    (
        "resume and pause again between two observations",
        [(vm(), vmi("a", paused=T1)), (vm(), vmi("a", paused=T2))],
        [("Resumed", "Paused", "On", tr.RESUMED_API), ("Paused", "On", "Paused", tr.PAUSED_API)],
    ),
    (
        "started paused",
        [(vm("Halted"), None), (vm(), vmi("a", paused=T1))],
        [("PoweredOn", "Off", "On", tr.STARTED_API), ("Paused", "On", "Paused", tr.PAUSED_API)],
    ),
    (
        "paused VM stopped",
        [(vm(), vmi("a", paused=T1)), (vm("Halted"), None)],
        [("PoweredOff", "Paused", "Off", tr.STOPPED_API)],
    ),
    (
        "first observation while starting records the power-on",
        [(vm(), vmi("a", "Scheduling")), (vm(), vmi("a"))],
        [("PoweredOn", "Off", "On", tr.STARTED_API)],
    ),
    (
        "boot order changed while off",
        [(vm("Halted"), None), (vm("Halted", generation=2, disk_order=2, pxe_order=1), None)],
        [("BootDeviceChanged", "Off", "Off", tr.BOOT_SPEC_CHANGED + " (boot order interface:default=1, ")],
    ),
    (
        "firmware changed while on",
        [(vm(), vmi("a")), (vm(generation=2, bootloader={"efi": {}}), vmi("a"))],
        [("BootDeviceChanged", "On", "On", tr.BOOT_SPEC_CHANGED)],
    ),
    ("other spec change is no boot change", [(vm(), vmi("a")), (vm(generation=3), vmi("a"))], []),
]


def run(observations: list[Obs]) -> list[tr.Transition]:
    memory: tr.Memory | None = None
    found: list[tr.Transition] = []
    for vm_obj, vmi_obj in observations:
        memory, new = tr.step(memory, tr.observe(kv(vm_obj, vmi_obj), vmi_obj), NOW)
        found += new
    return found


@pytest.mark.parametrize(("what", "observations", "expected"), SEQUENCES, ids=[s[0] for s in SEQUENCES])
def test_sequence(what: str, observations: list[Obs], expected: list[tuple[str, str, str, str]]) -> None:
    found = run(observations)
    assert [(t.reason, t.from_state, t.to_state) for t in found] == [e[:3] for e in expected]
    for t, e in zip(found, expected, strict=True):
        assert t.external.startswith(e[3])


def test_ids_are_what_kubevirt_recorded() -> None:
    """Ids depend on the VMI UID and reason (and the pause time), never on when we looked."""
    on = run([(vm("Halted"), None), (vm(), vmi("a"))])[0]
    assert on.id == tr.transition_id("a", "PoweredOn") and len(on.id) == 16
    assert on.time == T0  # the Running phaseTransitionTimestamp
    paused, resumed = run([(vm(), vmi("a")), (vm(), vmi("a", paused=T1)), (vm(), vmi("a"))])
    assert paused.id == tr.transition_id("a", "Paused", T1) and paused.time == T1
    assert resumed.id == tr.transition_id("a", "Resumed", T1)
    off = run([(vm(), vmi("a")), (vm("Manual"), vmi("a", "Succeeded", ended=T2))])[0]
    assert off.id == tr.transition_id("a", "PoweredOff") and off.time == T2
    restart = run([(vm(), vmi("a")), (vm(), vmi("b"))])[0]
    assert restart.id == tr.transition_id("b", "Restarted")
    assert set(restart.aliases) == {tr.transition_id("b", "PoweredOn"), restart.id}


def test_failure_is_a_warning_and_never_attributed() -> None:
    (off,) = run([(vm("Manual"), vmi("a")), (vm("Manual"), vmi("a", "Failed", ended=T2))])
    assert off.warning and not off.attributable
    reqs = [{"id": "r1", "time": T1, "protocol": "ipmi", "action": "off", "effect": "called"}]
    assert attribution.attribute([off], reqs, [])[0][0]["message"] == "outside the BMC: VMI failed"


def test_boot_change_id_is_deterministic() -> None:
    changed = vm("Halted", generation=2, pxe_order=2)
    (a,) = run([(vm("Halted"), None), (changed, None)])
    (b,) = run([(vm("Halted", disk_order=3), None), (changed, None)])
    assert a.id == b.id == tr.transition_id("vm-uid", "BootDeviceChanged", "2", tr.boot_hash(changed))


# --- memory survives a controller restart ---------------------------------------------------------------


def test_memory_round_trip() -> None:
    end = tr.End("a", tr.GUEST_SHUTDOWN, T1, by_itself=True, final=True)
    memory = tr.Memory("Off", "a", "", "abc", end)
    assert tr.Memory.from_json(memory.to_json()) == memory
    assert tr.Memory.from_json(None) is None
    assert tr.Memory.from_json("{not json") is None
    assert tr.Memory.from_json('{"state": "PoweringOn"}') is None


def test_restarted_controller_continues_from_the_marker() -> None:
    memory, _ = tr.step(None, tr.observe(kv(vm(), vmi("a")), vmi("a")), NOW)
    assert memory is not None
    restored = tr.Memory.from_json(memory.to_json())
    _, found = tr.step(restored, tr.observe(kv(vm(), vmi("a")), vmi("a")), NOW)
    assert found == []
    _, found = tr.step(restored, tr.observe(kv(vm("Halted"), None), None), NOW)
    assert [t.reason for t in found] == ["PoweredOff"]


def test_unrecorded_drops_ids_and_aliases() -> None:
    restart = run([(vm(), vmi("a")), (vm(), vmi("b"))])
    history = [{"id": tr.transition_id("b", "PoweredOn")}]
    assert tr.unrecorded(restart, history) == []
    assert tr.unrecorded(restart, []) == restart


# --- attribution ----------------------------------------------------------------------------------------


def req(rid: str, action: str, time: str, effect: str = "called", protocol: str = "ipmi") -> dict[str, Any]:
    return {
        "id": rid,
        "time": time,
        "protocol": protocol,
        "action": action,
        "user": "admin",
        "client": "10.244.1.7",
        "effect": effect,
    }


def transition(reason: str, time: str = T2) -> tr.Transition:
    return tr.Transition("id-" + reason, reason, time, "Off", "On", "x")


ATTRIBUTION = [
    ("on → PoweredOn", "PoweredOn", [req("r1", "on", T1)], [], "r1"),
    ("on → Resumed", "Resumed", [req("r1", "on", T1)], [], "r1"),
    ("resume → Resumed", "Resumed", [req("r1", "resume", T1)], [], "r1"),
    ("off → PoweredOff", "PoweredOff", [req("r1", "off", T1)], [], "r1"),
    ("shutdown → PoweredOff", "PoweredOff", [req("r1", "shutdown", T1)], [], "r1"),
    ("reset → Restarted", "Restarted", [req("r1", "reset", T1)], [], "r1"),
    ("cycle → PoweredOn from Off", "PoweredOn", [req("r1", "cycle", T1)], [], "r1"),
    ("graceful_restart → Restarted", "Restarted", [req("r1", "graceful_restart", T1)], [], "r1"),
    ("pause → Paused", "Paused", [req("r1", "pause", T1)], [], "r1"),
    ("wrong action", "PoweredOff", [req("r1", "on", T1)], [], None),
    ("pending counts", "PoweredOn", [req("r1", "on", T1, "pending")], [], "r1"),
    ("effect none does not", "PoweredOn", [req("r1", "on", T1, "none")], [], None),
    ("failed does not", "PoweredOn", [req("r1", "on", T1, "failed")], [], None),
    ("refused does not", "PoweredOn", [req("r1", "on", T1, "refused")], [], None),
    ("made after the transition", "PoweredOn", [req("r1", "on", T3)], [], None),
    ("same second is before", "PoweredOn", [req("r1", "on", T2)], [], "r1"),
    ("older than 120 s", "PoweredOn", [req("r1", "on", "2025-05-01T09:58:09Z")], [], None),
    ("exactly 120 s", "PoweredOn", [req("r1", "on", "2025-05-01T09:58:10Z")], [], "r1"),
    ("oldest wins", "PoweredOn", [req("r2", "on", T1), req("r1", "on", T0)], [], "r1"),
    ("consumed is skipped", "PoweredOn", [req("r1", "on", T0), req("r2", "on", T1)], ["r1"], "r2"),
    ("unknown counts", "PoweredOff", [req("r1", "off", T1, "unknown")], [], "r1"),
    (
        "unknown yields to a later accepted call",
        "PoweredOff",
        [req("r1", "off", T0, "unknown"), req("r2", "off", T1)],
        [],
        "r2",
    ),
    (
        "unknown older than a pending one still wins",
        "PoweredOff",
        [req("r1", "off", T0, "unknown"), req("r2", "off", T1, "pending")],
        [],
        "r1",
    ),
    (
        "a failed request left by a restart never takes a later one's transition",
        "PoweredOn",
        [req("r1", "on", T0, "failed"), req("r2", "on", T1)],
        [],
        "r2",
    ),
]


@pytest.mark.parametrize(
    ("what", "reason", "requests", "consumed", "expected"), ATTRIBUTION, ids=[a[0] for a in ATTRIBUTION]
)
def test_find_request(
    what: str, reason: str, requests: list[dict[str, Any]], consumed: list[str], expected: str | None
) -> None:
    found = attribution.find_request(transition(reason), requests, consumed)
    assert (found or {}).get("id") == expected


def test_entries_name_the_requester_and_consume_once() -> None:
    off = tr.Transition("t1", "PoweredOff", T2, "On", "Off", tr.STOPPED_API)
    on = tr.Transition("t2", "PoweredOn", T3, "Off", "On", tr.STARTED_API)
    reqs = [req("r1", "off", T1), req("r2", "on", T2, protocol="redfish")]
    (first, first_req), (second, _) = attribution.attribute([off, on], reqs, [])
    assert first_req is reqs[0]
    assert first == {
        "id": "t1",
        "time": T2,
        "from": "On",
        "to": "Off",
        "reason": "PoweredOff",
        "cause": "Request",
        "requester": "IPMI user admin from 10.244.1.7",
        "requestId": "r1",
        "message": "by IPMI user admin from 10.244.1.7 (request r1)",
    }
    assert second["message"] == "by Redfish user admin from 10.244.1.7 (request r2)"
    # A history entry consumes its request: the same off request does not explain a second power-off.
    ((again, none),) = attribution.attribute([off], reqs, [first])
    assert none is None and again["cause"] == "External"
    assert again["message"] == "outside the BMC: stopped through the KubeVirt API"
    assert "requestId" not in again


def test_a_late_transition_says_so() -> None:
    """A request whose call got no answer in time (unknown), carried out after all: the history entry and
    the VM's Event say it came late; an accepted one's do not."""
    off = tr.Transition("t1", "PoweredOff", T2, "On", "Off", tr.STOPPED_API)
    ((entry, found),) = attribution.attribute([off], [req("r1", "off", T1, "unknown")], [], "default/b")
    assert found is not None and entry["requestId"] == "r1"
    assert entry["message"] == f"by IPMI user admin from 10.244.1.7 (request r1); {rq.LATE_TEXT}"
    assert attribution.vm_message(entry, found, "default/b").endswith(rq.LATE_TEXT)
    ((entry, _),) = attribution.attribute([off], [req("r1", "off", T1)], [])
    assert "late" not in entry["message"]


def test_requests_of_another_bmc_of_the_vm_are_named() -> None:
    """Several BMCs serve one VM: a request made through A explains the transition in B's history too,
    naming A; the VM's Event names the BMC either way."""
    on = tr.Transition("t1", "PoweredOn", T2, "Off", "On", tr.STARTED_API)
    through_a = {**req("r1", "on", T1), attribution.BMC_KEY: "sys/a"}
    ((seen_by_b, found),) = attribution.attribute([on], [through_a], [], "sys/b")
    assert found is through_a and seen_by_b["cause"] == "Request"
    assert seen_by_b["message"] == "by IPMI user admin from 10.244.1.7 through BMC sys/a (request r1)"
    ((seen_by_a, _),) = attribution.attribute([on], [through_a], [], "sys/a")
    assert seen_by_a["message"] == "by IPMI user admin from 10.244.1.7 (request r1)"
    by_a = attribution.vm_message(seen_by_a, through_a, "sys/a")
    assert by_a == attribution.vm_message(seen_by_b, through_a, "sys/b")
    assert "through BMC sys/a" in attribution.vm_message(seen_by_a, through_a, "sys/a")
    outside = attribution.history_entry(on, None)
    expected = "outside the BMC: started through the KubeVirt API (seen by BMC sys/b)"
    assert attribution.vm_message(outside, None, "sys/b") == expected


def test_the_kbmc_restore_explains_a_boot_change() -> None:
    changed = tr.Transition("t1", "BootDeviceChanged", T2, "On", "On", tr.BOOT_SPEC_CHANGED)
    restore = {**req("r1-restore-abc", "boot_restore", T1), "protocol": "kbmc", "user": "-", "client": "-"}
    ((entry, _),) = attribution.attribute([changed], [restore], [])
    assert entry["cause"] == "Request" and entry["message"] == "by the kbmc (request r1-restore-abc)"


def test_an_eject_explains_a_boot_change() -> None:
    """Ejecting the virtual CD takes out a disk that a Cd override may have numbered: that change is the
    BMC's request, never `outside the BMC`."""
    changed = tr.Transition("t1", "BootDeviceChanged", T2, "Off", "Off", tr.BOOT_SPEC_CHANGED)
    eject = req("e1", "eject_media", T1)
    ((entry, _),) = attribution.attribute([changed], [eject], [])
    assert entry["cause"] == "Request" and "(request e1)" in entry["message"]
    insert = req("i1", "insert_media", T1)  # an insert adds a disk without a bootOrder: no boot change
    ((entry, _),) = attribution.attribute([changed], [insert], [])
    assert entry["cause"] == "External"


def test_a_firmware_setting_explains_a_boot_change() -> None:
    """Secure Boot or the boot mode through Redfish changes the VM's bootloader: the BMC's request."""
    changed = tr.Transition("t1", "BootDeviceChanged", T2, "On", "On", tr.BOOT_SPEC_CHANGED)
    setting = {**req("f1", "firmware_settings", T1), "protocol": "redfish"}
    ((entry, _),) = attribution.attribute([changed], [setting], [])
    assert entry["cause"] == "Request"
    assert entry["message"] == "by Redfish user admin from 10.244.1.7 (request f1)"


def test_a_vm_status_ahead_of_its_vmi_invents_nothing() -> None:
    """The VM reads ready before this observer has its VMI (a cache filling up): the state is On, but no
    transition is recorded until the VMI that identifies it is known."""
    ready = kv(vm(), vmi("a"))
    assert ready is not None
    assert tr.observe(ready, None).state == "On"
    memory, found = tr.step(None, tr.observe(ready, None), NOW)
    assert memory is None and found == []
    before = tr.Memory("On", "a", boot=tr.boot_hash(ready))
    memory, found = tr.step(before, tr.observe(ready, None), NOW)
    assert found == [] and memory == before
    _, found = tr.step(memory, tr.observe(ready, vmi("a")), NOW)
    assert found == []


def test_a_failure_seen_while_the_vm_still_reads_ready_is_kept() -> None:
    """virt-controller updates the VM after the VMI: a failed VMI may first be seen with `ready` still
    true (the state reads On). Its evidence is kept, so the replacement VMI is a power-off (VMI failed)
    and a power-on, not a restart."""
    running = kv(vm(), vmi("a"))
    assert running is not None
    failed = vmi("a", "Failed", ended=T1)
    memory, _ = tr.step(None, tr.observe(running, vmi("a")), NOW)
    memory, found = tr.step(memory, tr.observe(running, failed), NOW)  # the VM's status lags
    assert found == [] and memory is not None and memory.end is not None
    _, found = tr.step(memory, tr.observe(kv(vm(), vmi("b", running=T2)), vmi("b", running=T2)), NOW)
    assert [(t.reason, t.external) for t in found] == [
        ("PoweredOff", tr.VMI_FAILED),
        ("PoweredOn", "started again by KubeVirt (runStrategy Always)"),
    ]


def test_the_vm_id_is_salted() -> None:
    (on,) = run([(vm("Halted"), None), (vm(), vmi("a"))])
    assert on.vm_id == tr.transition_id("vm", "a", "PoweredOn") != on.id


def test_two_transitions_one_request() -> None:
    on = tr.Transition("t1", "PoweredOn", T2, "Off", "On", tr.STARTED_API)
    resumed = tr.Transition("t2", "Resumed", T3, "Paused", "On", tr.RESUMED_API)
    entries = attribution.attribute([on, resumed], [req("r1", "on", T1)], [])
    assert [e["cause"] for e, _ in entries] == ["Request", "External"]


# --- conditions -------------------------------------------------------------------------------------------


def powered_on(state: str) -> list[dict[str, Any]]:
    return [conditions.condition("PoweredOn", *tr.powered_on_condition(state))]


def test_powered_on_condition_keeps_transition_time() -> None:
    others = [{"type": "Ready", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": T0}]
    conds = conditions.merge(others, powered_on("On"), T1, 3)
    assert conds[0] == others[0]
    assert conds[1]["status"] == "True" and conds[1]["lastTransitionTime"] == T1
    assert conds[1]["observedGeneration"] == 3
    same = conditions.merge(conds, powered_on("Paused"), T2, 3)
    assert same[1]["lastTransitionTime"] == T1 and same[1]["reason"] == "Paused"
    off = conditions.merge(same, powered_on("Off"), T3, 3)
    assert off[1]["status"] == "False" and off[1]["lastTransitionTime"] == T3


def test_boot_override_pending() -> None:
    bmc: dict[str, Any] = {
        "status": {"bootOverride": {"target": "Pxe", "enabled": "Once", "savedBootOrder": [], "vmiUID": "a"}}
    }
    assert tr.boot_override_pending(bmc, "a")[0] == "True"
    assert tr.boot_override_pending(bmc, "")[0] == "True"
    assert tr.boot_override_pending(bmc, "b")[0] == "False"  # consumed by the new VMI
    bmc["status"]["bootOverride"]["enabled"] = "Continuous"
    assert tr.boot_override_pending(bmc, "a")[0] == "False"
    assert tr.boot_override_pending({}, "a")[0] == "False"
