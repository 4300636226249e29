"""One power state: the kbmc (KubeVirtMachine.power_status, from its watch caches) and the controller
(the `status.powerState` its recorder writes) give the same answer for the same VM and VMI.

The table crosses every runStrategy (and the legacy `running`), every VMI phase (none, booting, running,
paused, being deleted, final, lost), a VM being deleted and pending start/stop requests, each with the VM
status virt-controller writes for that VMI (the emulator's model of it) and with a status that lags one
step behind (written for another VMI state, as a watch delivers it while virt-controller catches up),
plus the cases where the two models used to disagree.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from vmbmc.controller import transitions as tr
from vmbmc.controller.recorder import status_patch
from vmbmc.k8s.informer import Informer
from vmbmc.kubevirt.machine import KubeVirtMachine
from vmbmc.kubevirt.records import BmcStatusStore
from vmbmc.machine import NotFound, PowerState
from vmbmc_devcluster.emulator.kubevirt_state import vm_status

NS, NAME, NOW = "ns", "vm1", "2025-05-01T10:01:00Z"
T0, T1 = "2025-05-01T10:00:00Z", "2025-05-01T10:00:30Z"

STRATEGIES: list[dict[str, Any]] = [
    {"runStrategy": "Always"},
    {"runStrategy": "RerunOnFailure"},
    {"runStrategy": "Manual"},
    {"runStrategy": "Halted"},
    {"runStrategy": "Once"},
    {"running": True},
    {"running": False},
]


def vm(spec: dict[str, Any], *, requests: list[dict[str, Any]] | None = None, deleting: bool = False) -> dict:
    meta: dict[str, Any] = {"name": NAME, "namespace": NS, "uid": "vm-uid", "generation": 1}
    if deleting:
        meta["deletionTimestamp"] = T1
    status = {"stateChangeRequests": requests} if requests else {}
    domain = {"devices": {"disks": [{"name": "root", "disk": {}, "bootOrder": 1}]}}
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": meta,
        "spec": {**spec, "template": {"spec": {"domain": domain}}},
        "status": status,
    }


def vmi(phase: str, *, paused: bool = False, deleting: bool = False, uid: str = "vmi-a") -> dict[str, Any]:
    stamps = [{"phase": "Pending", "phaseTransitionTimestamp": T0}]
    if phase not in ("", "Pending"):
        stamps.append({"phase": phase, "phaseTransitionTimestamp": T0})
    conditions = []
    if phase == "Running":
        ready = "False" if paused else "True"
        conditions.append({"type": "Ready", "status": ready, "lastTransitionTime": T0})
    if paused:
        conditions.append({"type": "Paused", "status": "True", "lastTransitionTime": T0})
    meta: dict[str, Any] = {"name": NAME, "namespace": NS, "uid": uid, "resourceVersion": "2"}
    if deleting:
        meta["deletionTimestamp"] = T1
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": meta,
        "status": {"phase": phase, "phaseTransitionTimestamps": stamps, "conditions": conditions},
    }


VMIS: dict[str, dict[str, Any] | None] = {
    "no VMI": None,
    "unset phase": vmi(""),
    "Pending": vmi("Pending"),
    "Scheduling": vmi("Scheduling"),
    "Scheduled": vmi("Scheduled"),
    "Running": vmi("Running"),
    "Running, paused": vmi("Running", paused=True),
    "Running, being deleted": vmi("Running", deleting=True),
    "Running, paused, being deleted": vmi("Running", paused=True, deleting=True),
    "Succeeded": vmi("Succeeded"),
    "Succeeded, being deleted": vmi("Succeeded", deleting=True),
    "Failed": vmi("Failed"),
    "Unknown (node lost)": vmi("Unknown"),
}
EXTRAS: dict[str, dict[str, Any]] = {
    "": {},
    "VM being deleted": {"deleting": True},
    "start requested": {"requests": [{"action": "Start"}]},
    "stop requested": {"requests": [{"action": "Stop", "uid": "vmi-a"}]},
    "restart requested": {"requests": [{"action": "Stop", "uid": "vmi-a"}, {"action": "Start"}]},
}


def with_status(vm_obj: dict[str, Any], status_for: dict[str, Any] | None) -> dict[str, Any]:
    """`vm_obj` with the status virt-controller writes when it sees the VMI `status_for`."""
    expected = tr.wants_running(vm_obj) and (status_for is None or tr.end_of(vm_obj, status_for) is not None)
    out = copy.deepcopy(vm_obj)
    out["status"] = vm_status(vm_obj, status_for, NOW, start_expected=expected)
    return out


def cases() -> Iterator[Any]:
    for spec, (vmi_name, vmi_obj), (extra_name, extra) in itertools.product(
        STRATEGIES, VMIS.items(), EXTRAS.items()
    ):
        base = vm(spec, **extra)
        strategy = spec.get("runStrategy") or f"running={spec['running']}"
        what = f"{strategy}, {vmi_name}{', ' + extra_name if extra_name else ''}"
        yield pytest.param(with_status(base, vmi_obj), vmi_obj, id=what)
        for lag_name, lag_vmi in VMIS.items():  # the VM's status written for another VMI state
            if lag_name != vmi_name:
                yield pytest.param(with_status(base, lag_vmi), vmi_obj, id=f"{what}; VM status of {lag_name}")
    # The disagreements of the two old models, as the issue found them.
    halted = with_status(vm({"runStrategy": "Always"}), vmi("Running"))
    halted["spec"]["runStrategy"] = "Halted"  # the stop was accepted; the VMI still runs
    yield pytest.param(halted, vmi("Running"), id="Halted with the VMI still running")
    not_ready = with_status(vm({"runStrategy": "Always"}), vmi("Scheduled"))
    yield pytest.param(not_ready, vmi("Running"), id="running VMI, VM not ready yet")
    unschedulable = vm({"runStrategy": "Manual"})
    unschedulable["status"] = {"printableStatus": "ErrorUnschedulable", "ready": False}
    yield pytest.param(unschedulable, None, id="Manual, ErrorUnschedulable, no VMI")


class Kbmc:
    """A KubeVirtMachine on watch caches filled by hand (no API server: the reads never call one)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.vms = Informer(None, "/vms")  # type: ignore[arg-type]
        self.vmis = Informer(None, "/vmis")  # type: ignore[arg-type]
        bmcs = Informer(None, "/bmcs")  # type: ignore[arg-type]
        bmcs._set({"metadata": {"name": "bmc", "namespace": "sys", "uid": "b", "resourceVersion": "1"}})
        store = BmcStatusStore(None, bmcs, "sys", "bmc")  # type: ignore[arg-type]
        self.machine = KubeVirtMachine(
            NS, NAME, api=None, loop=self.loop, events=None,  # type: ignore[arg-type]
            vms=self.vms, vmis=self.vmis, store=store, bmc="sys/bmc",
        )

    def state(self, vm_obj: dict[str, Any] | None, vmi_obj: dict[str, Any] | None) -> PowerState | None:
        """What the kbmc answers; None for NotFound (no VM)."""
        for informer, obj in ((self.vms, vm_obj), (self.vmis, vmi_obj)):
            if obj is None:
                informer._drop(NAME)
            else:
                informer._set(obj)
        try:
            return self.machine.power_status().state
        except NotFound:
            return None

    def close(self) -> None:
        self.machine.close()
        self.loop.close()


@pytest.fixture(scope="module")
def kbmc() -> Iterator[Kbmc]:
    k = Kbmc()
    yield k
    k.close()


def controller_state(vm_obj: dict[str, Any] | None, vmi_obj: dict[str, Any] | None) -> str:
    """The `status.powerState` the controller's recorder writes into a BMC."""
    bmc = {"metadata": {"name": "bmc", "namespace": "sys", "generation": 1}, "status": {}}
    patch = status_patch(bmc, tr.observe(vm_obj, vmi_obj), [], [], NOW)
    assert patch is not None
    return str(patch["powerState"])


@pytest.mark.parametrize(("vm_obj", "vmi_obj"), list(cases()))
def test_same_answer(kbmc: Kbmc, vm_obj: dict[str, Any], vmi_obj: dict[str, Any] | None) -> None:
    shown = kbmc.state(vm_obj, vmi_obj)
    assert shown is not None
    assert controller_state(vm_obj, vmi_obj) == shown.value


@pytest.mark.parametrize("vmi_obj", list(VMIS.values()), ids=list(VMIS))
def test_no_vm(kbmc: Kbmc, vmi_obj: dict[str, Any] | None) -> None:
    """No VM: the kbmc answers NotFound (IPMI and Redfish say so), the controller writes Unknown."""
    assert kbmc.state(None, vmi_obj) is None
    assert controller_state(None, vmi_obj) == PowerState.UNKNOWN.value


def test_the_old_disagreements_have_one_answer(kbmc: Kbmc) -> None:
    """The three cases the issue found, with the answers both sides now give."""
    named = (
        "Halted with the VMI still running",
        "running VMI, VM not ready yet",
        "Manual, ErrorUnschedulable, no VMI",
    )
    answers = {p.id: kbmc.state(*p.values) for p in cases() if p.id in named}
    assert answers == {
        "Halted with the VMI still running": PowerState.POWERING_OFF,
        "running VMI, VM not ready yet": PowerState.POWERING_ON,
        "Manual, ErrorUnschedulable, no VMI": PowerState.POWERING_ON,
    }
