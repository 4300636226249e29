"""Restarts, leader election, the periodic resync, health/metrics and kubectl against the controller."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.integration.controller.conftest import (
    CONTROLLER_USER,
    SYSTEM,
    Api,
    controller_kubeconfig,
    options,
    until,
)
from tests.prometheus_text import sample
from vmbmc.controller import ControllerThread


def _children(api: Api, name: str) -> dict[str, str]:
    out = {}
    for kind, suffix in (("deployment", "-kbmc"), ("service", "-kbmc"), ("secret", "-credentials")):
        obj = api.get(kind, SYSTEM, name + suffix)
        assert obj is not None, f"{kind} {name}{suffix}"
        out[kind] = obj["metadata"]["resourceVersion"]
    return out


def test_restart_changes_nothing_and_resync_removes_orphans(emulator: Any, api: Api, kubectl: Any) -> None:
    api.vm("life", "vm1")
    api.vm("life", "vm2")
    with ControllerThread(options(emulator, identity="first")):
        bmc = until(lambda: (api.get("vmbmc", SYSTEM, "life-vm1") or {}).get("status", {}).get("ready"), 20)
        until(lambda: api.get("vmbmc", SYSTEM, "life-vm2"), 20, "BMC life-vm2")
        time.sleep(1.0)  # let the status settle
        before = _children(api, "life-vm1")
        bmc_before = api.get("vmbmc", SYSTEM, "life-vm1")
        secret_before = api.get("secret", SYSTEM, "life-vm1-credentials")
    assert bmc
    # While no controller runs, vm2 goes: the restarted controller never sees its DELETED event.
    api.delete("vm", "life", "vm2")
    with ControllerThread(options(emulator, identity="second")) as second:
        until(lambda: api.get("vmbmc", SYSTEM, "life-vm2") is None, 15, "the resync to remove life-vm2")
        time.sleep(1.0)
        assert second.error is None
        assert _children(api, "life-vm1") == before, "a restart re-wrote children"
        after = api.get("vmbmc", SYSTEM, "life-vm1")
        assert after["metadata"]["uid"] == bmc_before["metadata"]["uid"]
        assert api.get("secret", SYSTEM, "life-vm1-credentials")["data"] == secret_before["data"]
        mine = api.list("vmbmc", SYSTEM, "virtualmachinebmc.kubevirt.io/vm-name=vm1")
        assert [b["metadata"]["name"] for b in mine] == ["life-vm1"], "no duplicate BMC"

        # kubectl: the printer columns and describe
        out = kubectl("get", "vmbmc", "-A").stdout
        header, *rows = out.splitlines()
        assert header.split() == ["NAMESPACE", "NAME", "VM", "POWER", "READY", "SERVICE-IP", "AGE"]
        row = next(r for r in rows if "life-vm1" in r).split()
        assert row[:3] == [SYSTEM, "life-vm1", "life/vm1"] and row[4] == "true"
        described = kubectl("describe", "vmbmc", "-n", SYSTEM, "life-vm1").stdout
        assert "Virtual Machine Ref" in described and "Service IP" in described

        # health, readiness, metrics
        base = f"http://127.0.0.1:{second.health_port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert (sample(metrics, "vmbmc_controller_reconciles_total", result="success") or 0) >= 1
        assert sample(metrics, "vmbmc_controller_transitions_total") is not None
        assert sample(metrics, "vmbmc_controller_bmcs") is not None


def test_leader_election_second_replica_waits(emulator: Any, api: Api) -> None:
    fast = {"leader_elect": True, "lease_seconds": 4.0, "renew_seconds": 1.0, "retry_seconds": 0.3}
    first = ControllerThread(options(emulator, identity="leader-a", **fast)).start()
    second = ControllerThread(options(emulator, identity="leader-b", **fast)).start(wait=False)
    try:
        lease = until(lambda: api.get("lease", SYSTEM, "vmbmc-controller"), 10, "the Lease")
        assert lease["spec"]["holderIdentity"] == "leader-a"
        until(lambda: second.health_port, 10, "the second replica's health port")
        time.sleep(2 * fast["renew_seconds"] + 1)  # longer than renewals; shorter than the lease
        assert not second.ready.is_set(), "the second replica must wait while the first leads"
        r = httpx.get(f"http://127.0.0.1:{second.health_port}/readyz")
        assert r.status_code == 503 and "leadership" in r.text
        # the leader keeps renewing
        lease = api.get("lease", SYSTEM, "vmbmc-controller")
        assert lease["spec"]["holderIdentity"] == "leader-a"
        first.stop()
        assert first.error is None
        second.wait_ready(10)  # released on exit: no need to wait out the lease
        lease = api.get("lease", SYSTEM, "vmbmc-controller")
        assert lease["spec"]["holderIdentity"] == "leader-b"
        # the new leader works
        api.vm("lead", "vm")
        until(lambda: api.get("vmbmc", SYSTEM, "lead-vm"), 20, "a BMC from the new leader")
    finally:
        first.stop()
        second.stop()
    assert second.error is None


def test_schema_rejects_invalid_bmcs(emulator: Any, api: Api, kubectl: Any) -> None:
    api.namespace("schema")
    bad = {
        "apiVersion": "virtualmachine.kubevirt.io/v1",
        "kind": "VirtualMachineBMC",
        "metadata": {"name": "bad", "namespace": "schema"},
        "spec": {"virtualMachineRef": {"name": "x"}, "vmName": "x", "vmNamespace": "schema"},
    }
    proc = kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert "exactly one of them" in proc.stderr
    bad["spec"] = {"virtualMachineRef": {"name": "x"}, "service": {"type": "Bogus"}}
    proc = kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0 and "Unsupported value" in proc.stderr
    assert api.get("vmbmc", "schema", "bad") is None


def test_namespace_selector_redfish_default_and_no_auto_create(emulator: Any, api: Api) -> None:
    api.namespace("sel-on", {"vmbmc": "on"})
    api.namespace("sel-off")
    api.vm("sel-on", "vm")
    api.vm("sel-off", "vm")
    opts = options(
        emulator, identity="selector", vm_namespace_selector="vmbmc in (on,yes)", redfish_default=True
    )
    with ControllerThread(opts):
        bmc = until(lambda: api.get("vmbmc", SYSTEM, "sel-on-vm"), 20, "BMC for the selected namespace")
        assert bmc["spec"]["redfish"]["enabled"] is True
        time.sleep(1.0)
        assert api.get("vmbmc", SYSTEM, "sel-off-vm") is None
        api.merge("namespace", None, "sel-off", {"metadata": {"labels": {"vmbmc": "yes"}}})
        until(lambda: api.get("vmbmc", SYSTEM, "sel-off-vm"), 20, "BMC once the namespace is selected")
        api.merge("namespace", None, "sel-off", {"metadata": {"labels": {"vmbmc": None}}})
        until(lambda: api.get("vmbmc", SYSTEM, "sel-off-vm") is None, 20, "BMC gone once deselected")
    with ControllerThread(options(emulator, identity="manual", auto_create=False)):
        api.vm("manual", "vm")
        time.sleep(1.5)
        assert api.get("vmbmc", SYSTEM, "manual-vm") is None
        assert api.get("vmbmc", SYSTEM, "sel-on-vm") is not None, "existing BMCs are kept"


def test_controller_runs_as_its_service_account_with_only_the_shipped_rules(
    emulator: Any, api: Api, kubectl: Any
) -> None:
    """The suite's controller is not the admin: what deploy/rbac.yaml does not grant is refused."""
    own = ["--kubeconfig", controller_kubeconfig(emulator)]
    api.vm("rules-probe", "vm")
    cases = [
        ("delete", "virtualmachine", "vm", "-n", "rules-probe"),
        ("get", "secrets", "-n", "rules-probe"),  # no list on Secrets: it never reads them by listing
        ("get", "configmaps", "-n", "rules-probe"),
        ("create", "clusterrolebinding", "x", "--clusterrole=cluster-admin", f"--user={CONTROLLER_USER}"),
    ]
    for args in cases:
        proc = kubectl(*own, *args, check=False)
        assert proc.returncode != 0, args
        assert "forbidden" in proc.stderr.lower() and f'User "{CONTROLLER_USER}"' in proc.stderr, proc.stderr
    assert kubectl(*own, "get", "virtualmachines", "-n", "rules-probe", "-o", "name").stdout.strip() == (
        "virtualmachine.kubevirt.io/vm"
    )
    # these probes were meant to be refused; the suite-wide check counts only unexpected ones
    def forget_probes() -> None:
        denials = emulator.emulator.security.denials
        kept = [d for d in denials if "rules-probe" not in d[1] and "clusterrolebindings" not in d[1]]
        denials.clear()
        denials.extend(kept)

    emulator.call(forget_probes)
