"""Observed power state from VM + VMI (`status.ready` first, printableStatus and the VMI phase for
transitions), never from what was asked."""

from __future__ import annotations

import pytest
from machine_vms import vm, vmi

from vmbmc.machine.observe import observe
from vmbmc.machine.types import PowerState as S

CASES = [
    ("stopped, no VMI", vm(ready=False), None, S.OFF),
    ("no status at all", {"metadata": {"name": "x"}, "spec": {}}, None, S.OFF),
    ("running and ready", vm(ready=True, printable="Running", run_strategy="Always"), vmi(), S.ON),
    (
        "VMI pending",
        vm(ready=False, printable="Starting", run_strategy="Always"),
        vmi("Pending"),
        S.POWERING_ON,
    ),
    (
        "VMI scheduled",
        vm(ready=False, printable="Starting", run_strategy="Always"),
        vmi("Scheduled"),
        S.POWERING_ON,
    ),
    (
        "VMI running, VM ready not yet reported",
        vm(ready=False, printable="Starting", run_strategy="Always"),
        vmi(),
        S.POWERING_ON,
    ),
    (
        "start request pending, no VMI",
        vm(changes=[{"action": "Start"}], run_strategy="Manual"),
        None,
        S.POWERING_ON,
    ),
    ("Always but no VMI yet", vm(run_strategy="Always"), None, S.POWERING_ON),
    (
        "printableStatus Starting, no VMI",
        vm(printable="Starting", run_strategy="Manual"),
        None,
        S.POWERING_ON,
    ),
    ("Provisioning", vm(printable="Provisioning", run_strategy="Manual"), None, S.POWERING_ON),
    (
        "VMI terminating",
        vm(ready=True, printable="Stopping", run_strategy="Halted"),
        vmi(deleting=True),
        S.POWERING_OFF,
    ),
    (
        "stop request for the VMI",
        vm(
            ready=True,
            printable="Running",
            run_strategy="Manual",
            changes=[{"action": "Stop", "uid": "vmi-uid-1"}],
        ),
        vmi(),
        S.POWERING_OFF,
    ),
    ("Halted with a live VMI (stop accepted)", vm(ready=True, printable="Running"), vmi(), S.POWERING_OFF),
    (
        "printableStatus Stopping",
        vm(ready=True, printable="Stopping", run_strategy="Always"),
        vmi(),
        S.POWERING_OFF,
    ),
    (
        "VM terminating",
        vm(ready=True, printable="Terminating", run_strategy="Always", deleting=True),
        vmi(),
        S.POWERING_OFF,
    ),
    ("VM terminating, VMI gone", vm(ready=False, printable="Terminating", deleting=True), None, S.OFF),
    ("paused", vm(ready=True, printable="Paused", run_strategy="Always"), vmi(paused=True), S.PAUSED),
    (
        "paused and stopping",
        vm(
            ready=True,
            printable="Stopping",
            run_strategy="Always",
            changes=[{"action": "Stop", "uid": "vmi-uid-1"}],
        ),
        vmi(paused=True),
        S.POWERING_OFF,
    ),
    (
        "guest shut down (VMI Succeeded), Manual",
        vm(ready=False, printable="Stopped", run_strategy="Manual"),
        vmi("Succeeded"),
        S.OFF,
    ),
    (
        "VMI failed, RerunOnFailure restarts it",
        vm(ready=False, run_strategy="RerunOnFailure"),
        vmi("Failed"),
        S.POWERING_ON,
    ),
    ("VMI failed, Manual", vm(ready=False, run_strategy="Manual"), vmi("Failed"), S.OFF),
    (
        "VMI phase Unknown (node lost)",
        vm(ready=False, printable="Unknown", run_strategy="Always"),
        vmi("Unknown"),
        S.UNKNOWN,
    ),
    ("printableStatus Unknown, no VMI", vm(printable="Unknown", run_strategy="Manual"), None, S.UNKNOWN),
    (
        "legacy spec.running true, no VMI",
        {"metadata": {}, "spec": {"running": True}, "status": {}},
        None,
        S.POWERING_ON,
    ),
]


@pytest.mark.parametrize(("what", "vm_obj", "vmi_obj", "want"), CASES, ids=[c[0] for c in CASES])
def test_observe(what: str, vm_obj: dict, vmi_obj: dict | None, want: S) -> None:
    assert observe(vm_obj, vmi_obj) is want
