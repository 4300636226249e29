"""The observed power state of a VM, derived from its VirtualMachine and VirtualMachineInstance.

Pure functions on the objects as the API serves them (plain dicts). The state comes from what KubeVirt
reports, never from what a BMC last asked for: `status.ready` is the primary
On/Off bit; printableStatus, the VMI's phase and deletionTimestamp and pending `stateChangeRequests` tell
the transitional states apart; the VMI's `Paused` condition tells Paused.
"""

from __future__ import annotations

from typing import Any

from vmbmc.machine.types import PowerState

FINAL_PHASES = ("Succeeded", "Failed")
BOOTING_PHASES = ("", "Pending", "Scheduling", "Scheduled")
STOPPING_STATUSES = ("Stopping", "Terminating")
# printableStatus values KubeVirt shows while it is bringing a VM up (or retrying to).
STARTING_STATUSES = (
    "Starting",
    "Provisioning",
    "WaitingForVolumeBinding",
    "ErrorUnschedulable",
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrorPvcNotFound",
    "ErrorDataVolumeNotFound",
    "DataVolumeError",
    "CrashLoopBackOff",
)


def _status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("status") or {}


def _meta(obj: dict[str, Any] | None) -> dict[str, Any]:
    return (obj or {}).get("metadata") or {}


def vmi_phase(vmi: dict[str, Any] | None) -> str:
    return str(_status(vmi).get("phase") or "")


def vmi_alive(vmi: dict[str, Any] | None) -> bool:
    """A VMI exists and has not reached a final phase."""
    return vmi is not None and vmi_phase(vmi) not in FINAL_PHASES


def vmi_uid(vmi: dict[str, Any] | None) -> str:
    return str(_meta(vmi).get("uid") or "") if vmi is not None else ""


def is_deleting(obj: dict[str, Any] | None) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def is_paused(vmi: dict[str, Any] | None) -> bool:
    for cond in _status(vmi).get("conditions") or []:
        if cond.get("type") == "Paused" and cond.get("status") == "True":
            return True
    return False


def run_strategy(vm: dict[str, Any]) -> str:
    """spec.runStrategy, else the legacy spec.running (true → Always), else Halted."""
    spec = vm.get("spec") or {}
    if spec.get("runStrategy"):
        return str(spec["runStrategy"])
    return "Always" if spec.get("running") else "Halted"


def pending_change(vm: dict[str, Any]) -> str:
    """The first pending stateChangeRequests action ("Start", "Stop") or ""."""
    reqs = _status(vm).get("stateChangeRequests") or []
    return str(reqs[0].get("action") or "") if reqs else ""


def stop_requested_for(vm: dict[str, Any], vmi: dict[str, Any] | None) -> bool:
    for req in _status(vm).get("stateChangeRequests") or []:
        if req.get("action") == "Stop" and (not req.get("uid") or req.get("uid") == vmi_uid(vmi)):
            return True
    return False


def start_expected(vm: dict[str, Any], vmi: dict[str, Any] | None) -> bool:
    """No live VMI, but KubeVirt is going to create one."""
    status = _status(vm)
    if any(r.get("action") == "Start" for r in status.get("stateChangeRequests") or []):
        return True
    if status.get("printableStatus") in STARTING_STATUSES:
        return True
    strategy = run_strategy(vm)
    if strategy == "Always":
        return True
    return strategy == "RerunOnFailure" and vmi_phase(vmi) == "Failed"


def phase_time(vmi: dict[str, Any] | None, phase: str) -> str:
    """When the VMI last entered `phase` (status.phaseTransitionTimestamps), "" when it never did."""
    found = ""
    for entry in _status(vmi).get("phaseTransitionTimestamps") or []:
        if entry.get("phase") == phase and entry.get("phaseTransitionTimestamp"):
            found = str(entry["phaseTransitionTimestamp"])
    return found


def observe(vm: dict[str, Any] | None, vmi: dict[str, Any] | None) -> PowerState:
    """The power state of `vm` with its VMI (None when there is none).

    The one answer for every reader: the kbmc's front ends (through `vmbmc.kubevirt.power`) and the
    controller's `status.powerState` and history (`vmbmc.controller.transitions`). No VM: Unknown (a VMI
    alone is not a machine this BMC serves; the kbmc answers NotFound before asking)."""
    if vm is None:
        return PowerState.UNKNOWN
    status = _status(vm)
    printable = status.get("printableStatus") or ""
    ready = status.get("ready") is True
    alive = vmi_alive(vmi)
    if alive and (is_deleting(vmi) or stop_requested_for(vm, vmi) or run_strategy(vm) == "Halted"):
        # Halted with a live VMI: virt-controller is about to delete it (a stop was accepted).
        return PowerState.POWERING_OFF
    if (alive or ready) and (printable in STOPPING_STATUSES or is_deleting(vm)):
        return PowerState.POWERING_OFF
    if is_deleting(vm):
        return PowerState.OFF
    if alive and is_paused(vmi):
        return PowerState.PAUSED
    if ready:
        return PowerState.ON
    if alive:
        # Booting (or Running, with the VM's Ready not yet reported), or a VMI whose node is lost.
        return PowerState.UNKNOWN if vmi_phase(vmi) == "Unknown" else PowerState.POWERING_ON
    if start_expected(vm, vmi):
        return PowerState.POWERING_ON
    if printable == "Unknown":
        return PowerState.UNKNOWN
    return PowerState.OFF
