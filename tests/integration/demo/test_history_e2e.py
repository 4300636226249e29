"""The power history in the demo's topology: the real controller (as its ServiceAccount, deploy/rbac.yaml),
the pod runner running each kbmc pod as a real `vmbmc kbmc` process under its own token, real clients
(ipmitool, sushy, kubectl). What an operator reads must never lie:

- Ironic's flow (PXE once + UEFI, power on) over IPMI and over Redfish: nothing says `outside the BMC`;
  each BootDeviceChanged names a request of the BMC (the override, then the kbmc's own restore).
- Two BMCs on one VM: power on through one, off through the other; each BMC's history names the BMC and
  the requester; the VM has exactly one PoweredOn and one PoweredOff Event.
- Stopped through the KubeVirt API and a guest shutdown still read `outside the BMC: …`.
- A controller restarted in the middle adds nothing twice.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sushy
import urllib3
from sushy import BootSource, BootSourceOverrideEnabled, BootSourceOverrideMode, ResetType

sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))

from history_topology import SYSTEM, TENANT, Topology, topology

from tests.kubectl_events import assert_cause_first, described_reasons
from vmbmc_devcluster.testing.waiting import wait_until

OUTSIDE = "outside the BMC"


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with topology(tmp_path_factory.mktemp("history-e2e"), 220) as found:
        yield found


def assert_nothing_outside(topo: Topology, bmc: str, vm: str) -> None:
    for entry in topo.history(bmc):
        assert OUTSIDE not in entry["message"] and entry["cause"] == "Request", entry
    for event in topo.bmc_events(bmc) + topo.vm_events(vm):
        assert OUTSIDE not in event["message"], event


def assert_override_used_and_attributed(topo: Topology, bmc: str, vm: str) -> None:
    """The Once override was consumed (the boot order restored, the record gone), and both boot changes
    (the override's patch and the restore's) name the BMC's requests, the restore naming the override."""
    wait_until(
        lambda: not (topo.bmc(bmc).get("status") or {}).get("bootOverride"), timeout=30, what="consumed"
    )
    changes = topo.wait_entries(bmc, "BootDeviceChanged", 2)
    requests = {r["id"]: r for r in topo.bmc(bmc)["status"]["requests"]}
    override, restore = (requests[c["requestId"]] for c in changes[:2])
    assert override["action"] == "boot_override" and override["protocol"] in ("ipmi", "redfish")
    assert restore["action"] == "boot_restore" and restore["effect"] == "called"
    assert (restore["protocol"], restore["user"], restore["client"]) == ("kbmc", "-", "-")
    assert changes[1]["message"] == f"by the kbmc (request {restore['id']})"
    (restored,) = [e for e in topo.bmc_events(bmc) if e["reason"] == "BootOverrideRestored"]
    assert f"one-time override {override['id']} was used" in restored["message"]
    name = f"{bmc}.{changes[1]['id']}"
    (restore_change,) = [e for e in topo.bmc_events(bmc) if e["metadata"]["name"] == name]
    assert restored["eventTime"] < restore_change["eventTime"]
    # the second kubectl sorts on: the restore's boot change never shares the restore's (rounded up)
    assert restored["lastTimestamp"] < restore_change["lastTimestamp"], (restored, restore_change)
    vm_obj = topo.emu.call(topo.store.get, topo.rt["vm"], TENANT, vm)
    devices = vm_obj["spec"]["template"]["spec"]["domain"]["devices"]
    assert all("bootOrder" not in d for d in devices["disks"] + devices["interfaces"])  # as it was


def test_ironic_flow_over_ipmi(topo: Topology) -> None:
    vm = topo.create_vm(1)
    bmc = f"{TENANT}-{vm}"
    assert topo.ipmitool(bmc, "chassis", "bootdev", "pxe", "options=efiboot") == "Set Boot Device to pxe"
    assert topo.ipmitool(bmc, "power", "on") == "Chassis Power Control: Up/On"
    wait_until(lambda: topo.vm_printable(vm) == "Running", timeout=30, what="VM running")
    (on,) = topo.wait_entries(bmc, "PoweredOn", 1)
    assert on["message"].startswith("by IPMI user admin from 127.0.0.1 (request ")
    assert_override_used_and_attributed(topo, bmc, vm)
    assert_nothing_outside(topo, bmc, vm)
    assert_history_once(topo, bmc)
    # kubectl describe lists each request before its effect (eventTime), and the VM's Events name the BMC.
    reasons = described_reasons(topo.kubectl("describe", "vmbmc", bmc, "-n", SYSTEM))
    assert_cause_first(reasons, topo.bmc_events(bmc), [
        ("PowerOnRequested", "PoweredOn"), ("BootOverrideSet", "BootOverrideRestored"),
    ])  # fmt: skip
    assert reasons.index("BootOverrideSet") < reasons.index("BootDeviceChanged"), reasons
    assert reasons.index("BootOverrideRestored") < len(reasons) - reasons[::-1].index("BootDeviceChanged") - 1
    (vm_on,) = [e for e in topo.vm_events(vm) if e["reason"] == "PoweredOn"]
    assert f"through BMC {SYSTEM}/{bmc}" in vm_on["message"]


def redfish_ironic_flow(url: str, user: str, password: str) -> None:
    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    auth = sushy.auth.SessionOrBasicAuth(user, password)
    conn = sushy.Sushy(url + "/redfish/v1", auth=auth, verify=False)
    try:
        system = conn.get_system(conn.get_system_collection().members_identities[0])
        system.set_system_boot_options(
            BootSource.PXE, enabled=BootSourceOverrideEnabled.ONCE, mode=BootSourceOverrideMode.UEFI
        )
        system.reset_system(ResetType.ON)
    finally:
        auth.close()


def test_ironic_flow_over_sushy(topo: Topology) -> None:
    vm = topo.create_vm(2)
    bmc = f"{TENANT}-{vm}"
    _, user, password, url = topo.credentials(bmc)
    redfish_ironic_flow(url, user, password)
    wait_until(lambda: topo.vm_printable(vm) == "Running", timeout=30, what="VM running")
    (on,) = topo.wait_entries(bmc, "PoweredOn", 1)
    assert on["message"].startswith("by Redfish user admin from 127.0.0.1")
    assert_override_used_and_attributed(topo, bmc, vm)
    assert_nothing_outside(topo, bmc, vm)


def test_two_bmcs_on_one_vm(topo: Topology) -> None:
    vm = topo.create_vm(3)
    a = f"{TENANT}-{vm}"
    b = "second-bmc"
    second = {
        "apiVersion": "virtualmachine.kubevirt.io/v1",
        "kind": "VirtualMachineBMC",
        "metadata": {"name": b, "namespace": SYSTEM},
        "spec": {"virtualMachineRef": {"namespace": TENANT, "name": vm}},
    }
    topo.emu.call(topo.store.create, topo.rt["bmc"], second, SYSTEM)
    topo.credentials(a)
    topo.credentials(b)
    assert topo.ipmitool(a, "power", "on") == "Chassis Power Control: Up/On"
    wait_until(lambda: topo.vm_printable(vm) == "Running", timeout=30, what="VM running")
    topo.wait_entries(a, "PoweredOn", 1)
    topo.wait_entries(b, "PoweredOn", 1)
    assert topo.ipmitool(b, "power", "off") == "Chassis Power Control: Down/Off"
    (off_a,) = topo.wait_entries(a, "PoweredOff", 1)
    (off_b,) = topo.wait_entries(b, "PoweredOff", 1)
    (on_a,) = topo.wait_entries(a, "PoweredOn", 1)
    (on_b,) = topo.wait_entries(b, "PoweredOn", 1)
    request = {r["id"]: r for r in topo.bmc(a)["status"]["requests"] + topo.bmc(b)["status"]["requests"]}
    # Each BMC's history is true from its own side: its own requests plainly, the other's naming it.
    assert on_a["cause"] == on_b["cause"] == "Request" and on_a["requestId"] == on_b["requestId"]
    assert request[on_a["requestId"]]["action"] == "on"
    assert on_a["message"] == f"by IPMI user admin from 127.0.0.1 (request {on_a['requestId']})"
    assert (
        on_b["message"]
        == f"by IPMI user admin from 127.0.0.1 through BMC {SYSTEM}/{a} (request {on_a['requestId']})"
    )
    assert off_a["requestId"] == off_b["requestId"] and request[off_b["requestId"]]["action"] == "off"
    assert off_b["message"] == f"by IPMI user admin from 127.0.0.1 (request {off_b['requestId']})"
    assert (
        off_a["message"]
        == f"by IPMI user admin from 127.0.0.1 through BMC {SYSTEM}/{b} (request {off_b['requestId']})"
    )
    # The VM: one Event per transition, naming the BMC and the requester.
    events = [e for e in topo.vm_events(vm) if e.get("reportingComponent") == "vmbmc-controller"]
    assert sorted(e["reason"] for e in events) == ["PoweredOff", "PoweredOn"], events
    by_reason = {e["reason"]: e for e in events}
    assert by_reason["PoweredOn"]["message"] == (
        f"by IPMI user admin from 127.0.0.1 through BMC {SYSTEM}/{a} (request {on_a['requestId']})"
    )
    assert by_reason["PoweredOff"]["message"] == (
        f"by IPMI user admin from 127.0.0.1 through BMC {SYSTEM}/{b} (request {off_b['requestId']})"
    )
    for bmc in (a, b):
        assert_nothing_outside(topo, bmc, vm)
    topo.emu.call(topo.store.delete, topo.rt["bmc"], SYSTEM, b)


def test_outside_changes_and_a_controller_restart(topo: Topology) -> None:
    """virtctl start/stop and a guest shutdown are outside every BMC; a stop made while the controller is
    down is recorded once by its successor; a restart with nothing new adds nothing."""
    vm = topo.create_vm(4)
    bmc = f"{TENANT}-{vm}"
    topo.credentials(bmc)
    topo.emu.call(topo.emu.kubevirt.virtctl, TENANT, vm, "start")
    (on,) = topo.wait_entries(bmc, "PoweredOn", 1)
    assert on["message"] == f"{OUTSIDE}: started through the KubeVirt API"
    wait_until(lambda: topo.vm_printable(vm) == "Running", timeout=30, what="VM running")
    topo.emu.call(topo.emu.kubevirt.guest_shutdown, TENANT, vm)  # runStrategy Always: KubeVirt restarts it
    (down,) = topo.wait_entries(bmc, "PoweredOff", 1)
    assert down["message"] == f"{OUTSIDE}: guest shutdown"
    again = topo.wait_entries(bmc, "PoweredOn", 2)[1]
    assert again["message"] == f"{OUTSIDE}: started again by KubeVirt (runStrategy Always)"
    wait_until(lambda: topo.vm_printable(vm) == "Running", timeout=30, what="VM running again")

    topo.stop_controller()
    topo.emu.call(topo.emu.kubevirt.virtctl, TENANT, vm, "stop")
    wait_until(lambda: topo.vm_printable(vm) == "Stopped", timeout=30, what="VM stopped")
    topo.start_controller()
    stopped = topo.wait_entries(bmc, "PoweredOff", 2)[1]
    assert stopped["message"] == f"{OUTSIDE}: stopped through the KubeVirt API"
    vm_events = [e for e in topo.vm_events(vm) if e.get("reportingComponent") == "vmbmc-controller"]
    assert sorted(e["reason"] for e in vm_events) == ["PoweredOff", "PoweredOff", "PoweredOn", "PoweredOn"]
    assert all(e["message"].startswith(f"{OUTSIDE}: ") for e in vm_events)
    assert_history_once(topo, bmc)

    # Restarted again with nothing new: the history and the Events stay as they are.
    ids = [h["id"] for h in topo.history(bmc)]
    counts = (len(topo.bmc_events(bmc)), len(topo.vm_events(vm)))
    topo.stop_controller()
    topo.start_controller()
    wait_until(
        lambda: topo.controller is not None and topo.controller.ready.is_set(), timeout=30, what="ready"
    )
    topo.wait_entries(bmc, "PoweredOff", 2)
    assert [h["id"] for h in topo.history(bmc)] == ids
    assert (len(topo.bmc_events(bmc)), len(topo.vm_events(vm))) == counts


def assert_history_once(topo: Topology, bmc: str) -> None:
    """Every entry once, and one controller Event on the BMC for each."""
    ids = [h["id"] for h in topo.history(bmc)]
    assert len(ids) == len(set(ids))
    ours = [e for e in topo.bmc_events(bmc) if e.get("reportingComponent") == "vmbmc-controller"]
    assert sorted(e["metadata"]["name"] for e in ours) == sorted(f"{bmc}.{i}" for i in ids)
