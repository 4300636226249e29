"""Real requests with a kbmc's token, under exactly the Roles the controller writes (every rule
limited by resourceNames to its own objects except creating Events): what its own VM, VMI, BMC and
Events allow, and what every other object refuses, with
kube-apiserver's 403 wording. The emulator enforces RBAC (its default). What `kubectl auth can-i`,
`whoami` and access reviews say for the same identity is in test_rbac_kubectl.py."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from vmbmc.controller.children import BmcInfo
from vmbmc_devcluster.demo.identity import install_kbmc_identity
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.testing.waiting import wait_until

NS = "kbmc-rights"
USER = f"system:serviceaccount:{NS}:bmc-a-kbmc"
SUB = f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _vm(name: str) -> dict[str, Any]:
    """The demo's VM as `name`, its root disk a DataVolume (and so a PVC) `<name>-rootdisk`."""
    vm = copy.deepcopy(sample_vm(1, NS))
    vm["metadata"]["name"] = name
    vm["spec"]["dataVolumeTemplates"][0]["metadata"]["name"] = f"{name}-rootdisk"
    root = next(v for v in vm["spec"]["template"]["spec"]["volumes"] if v["name"] == "rootdisk")
    root["dataVolume"]["name"] = f"{name}-rootdisk"
    return vm


def _bmc(name: str, vm: str) -> dict[str, Any]:
    return {
        "apiVersion": "virtualmachine.kubevirt.io/v1",
        "kind": "VirtualMachineBMC",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"virtualMachineRef": {"namespace": NS, "name": vm}},
    }


@pytest.fixture(scope="module")
def as_kbmc(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """kubectl as BMC `bmc-a`'s kbmc (VM `vm-a`); `vm-b` and `bmc-b` belong to another BMC."""
    if not getattr(emulator, "emulator", None):
        pytest.skip("needs the emulator (installs the kbmc identity directly)")
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}]
    docs += [_vm("vm-a"), _vm("vm-b"), _bmc("bmc-a", "vm-a"), _bmc("bmc-b", "vm-b")]
    admin = [emulator.kubeconfig]
    proc = _kubectl(
        admin[0], "create", "--validate=false", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs)
    )
    assert proc.returncode == 0, proc.stderr
    bmc = json.loads(_kubectl(admin[0], "get", "vmbmc", "bmc-a", "-n", NS, "-o", "json").stdout)
    path = tmp_path_factory.mktemp("kbmc-rights") / "kbmc.kubeconfig"
    install_kbmc_identity(emulator, BmcInfo.from_body(bmc), path)

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return _kubectl(str(path), *args, "-n", NS, input=input)

    return run


def _kubectl(kubeconfig: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    from vmbmc_devcluster.testing.plugin import KUBECTL

    return subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, *args], input=input, capture_output=True, text=True, timeout=60
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _forbidden(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "(Forbidden)" in proc.stderr and message in proc.stderr, proc.stderr


def test_its_own_vm_vmi_subresources_bmc_status_and_events(as_kbmc: Callable[..., Any]) -> None:
    assert _ok(as_kbmc("get", "vm", "vm-a", "-o", "name")).strip() == "virtualmachine.kubevirt.io/vm-a"
    by_name = _ok(as_kbmc("get", "vms", "--field-selector", "metadata.name=vm-a", "-o", "name"))
    assert by_name.strip() == "virtualmachine.kubevirt.io/vm-a"
    _ok(as_kbmc("patch", "vm", "vm-a", "--type", "merge", "-p", '{"metadata":{"labels":{"boot":"pxe"}}}'))
    _ok(as_kbmc("replace", "--raw", f"{SUB}/virtualmachines/vm-a/start", "-f", "-", input="{}"))

    def running() -> bool:
        proc = as_kbmc("get", "vmi", "vm-a", "-o", "jsonpath={.status.phase}")
        return proc.returncode == 0 and proc.stdout == "Running"

    wait_until(running, 15, "its VMI Running (read with its own rights)")
    for action in ("pause", "unpause"):
        _ok(
            as_kbmc("replace", "--raw", f"{SUB}/virtualmachineinstances/vm-a/{action}", "-f", "-", input="{}")
        )
    # Serial over LAN: its own VM's serial console, and no other's.
    # (A plain GET, not a WebSocket upgrade: authorized, then not served as a console.)
    own = as_kbmc("get", "--raw", f"{SUB}/virtualmachineinstances/vm-a/console")
    assert "(Forbidden)" not in own.stderr, own.stderr
    _forbidden(
        as_kbmc("get", "--raw", f"{SUB}/virtualmachineinstances/vm-b/console"),
        f'User "{USER}" cannot get resource "virtualmachineinstances/console" in API group '
        f'"subresources.kubevirt.io" in the namespace "{NS}"',
    )
    restart = '{"gracePeriodSeconds": 0}'
    _ok(as_kbmc("replace", "--raw", f"{SUB}/virtualmachines/vm-a/restart", "-f", "-", input=restart))
    _ok(as_kbmc("replace", "--raw", f"{SUB}/virtualmachines/vm-a/stop", "-f", "-", input="{}"))
    assert _ok(as_kbmc("get", "vmbmc", "bmc-a", "-o", "name")).strip().endswith("/bmc-a")
    status = '{"status": {"powerState": "Off"}}'
    _ok(as_kbmc("patch", "vmbmc", "bmc-a", "--subresource=status", "--type", "merge", "-p", status))
    # A log clear (IPMI Clear SEL, Redfish ClearLog) writes its own status.logClearedAt, nothing else; the
    # log views read status.powerHistory from the same object.
    cleared = '{"status": {"logClearedAt": {"time": "2025-06-02T10:00:00Z", "requestId": "r1"}}}'
    _ok(as_kbmc("patch", "vmbmc", "bmc-a", "--subresource=status", "--type", "merge", "-p", cleared))
    read = as_kbmc("get", "vmbmc", "bmc-a", "-o", "jsonpath={.status.logClearedAt.requestId}")
    assert _ok(read) == "r1"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "bmc-a.rights-test", "namespace": NS},
        "involvedObject": {"kind": "VirtualMachineBMC", "name": "bmc-a", "namespace": NS},
        "reason": "RightsTest",
        "message": "written by the kbmc's identity",
        "type": "Normal",
    }
    _ok(as_kbmc("create", "--validate=false", "-f", "-", input=json.dumps(event)))


def test_everything_else_is_forbidden(as_kbmc: Callable[..., Any]) -> None:
    in_ns = f'in the namespace "{NS}"'
    _forbidden(
        as_kbmc("get", "vm", "vm-b"),
        f'virtualmachines.kubevirt.io "vm-b" is forbidden: User "{USER}" cannot get resource '
        f'"virtualmachines" in API group "kubevirt.io" {in_ns}',
    )
    patch = ("--type", "merge", "-p", '{"metadata":{"labels":{"x":"y"}}}')
    _forbidden(as_kbmc("patch", "vm", "vm-b", *patch), 'cannot get resource "virtualmachines"')
    _forbidden(
        as_kbmc("replace", "--raw", f"{SUB}/virtualmachines/vm-b/start", "-f", "-", input="{}"),
        f'virtualmachines.subresources.kubevirt.io "vm-b" is forbidden: User "{USER}" cannot update '
        f'resource "virtualmachines/start" in API group "subresources.kubevirt.io" {in_ns}',
    )
    _forbidden(
        as_kbmc("get", "vms"),
        f'User "{USER}" cannot list resource "virtualmachines" in API group "kubevirt.io" {in_ns}',
    )
    _forbidden(as_kbmc("get", "secrets"), f'cannot list resource "secrets" in API group "" {in_ns}')
    _forbidden(as_kbmc("get", "secret", "bmc-a-credentials"), 'cannot get resource "secrets"')
    _forbidden(
        as_kbmc("delete", "vm", "vm-a", "--wait=false"),
        f'User "{USER}" cannot delete resource "virtualmachines" in API group "kubevirt.io" {in_ns}',
    )
    _forbidden(as_kbmc("get", "vmbmc", "bmc-b"), 'cannot get resource "virtualmachinebmcs"')
    status = '{"status": {"powerState": "On"}}'
    _forbidden(
        as_kbmc("patch", "vmbmc", "bmc-b", "--subresource=status", "--type", "merge", "-p", status),
        'cannot get resource "virtualmachinebmcs/status"',
    )
    cleared = '{"status": {"logClearedAt": {"time": "2025-06-02T10:00:00Z", "requestId": "r2"}}}'
    _forbidden(
        as_kbmc("patch", "vmbmc", "bmc-b", "--subresource=status", "--type", "merge", "-p", cleared),
        'cannot get resource "virtualmachinebmcs/status"',
    )
    _forbidden(as_kbmc("get", "virtualmachinebmcs"), 'cannot list resource "virtualmachinebmcs"')
    _forbidden(as_kbmc("get", "pods"), 'cannot list resource "pods"')
    _forbidden(as_kbmc("get", "vms", "-A"), "at the cluster scope")


def test_its_own_disks_claims_and_no_others(as_kbmc: Callable[..., Any]) -> None:
    """For the disk sizes Redfish reports: `get` on the PVC and DataVolume its VM's root disk names, by
    name; another VM's, and any list, are refused."""
    def own_pvc() -> subprocess.CompletedProcess[str] | None:
        proc = as_kbmc("get", "pvc", "vm-a-rootdisk", "-o", "json")
        return proc if proc.returncode == 0 else None

    pvc = wait_until(own_pvc, 30, "its VM's root disk PVC (CDI makes it), read with its own rights")
    assert json.loads(pvc.stdout)["spec"]["resources"]["requests"]["storage"] == "10Gi"
    _ok(as_kbmc("get", "dv", "vm-a-rootdisk", "-o", "name"))
    in_ns = f'in the namespace "{NS}"'
    _forbidden(
        as_kbmc("get", "pvc", "vm-b-rootdisk"),
        f'persistentvolumeclaims "vm-b-rootdisk" is forbidden: User "{USER}" cannot get resource '
        f'"persistentvolumeclaims" in API group "" {in_ns}',
    )
    _forbidden(as_kbmc("get", "dv", "vm-b-rootdisk"), 'cannot get resource "datavolumes"')
    pvcs = 'resource "persistentvolumeclaims"'
    _forbidden(as_kbmc("get", "pvc"), f'cannot list {pvcs} in API group "" {in_ns}')
    own = "fieldSelector=metadata.name=vm-a-rootdisk"
    watch = f"/api/v1/namespaces/{NS}/persistentvolumeclaims?watch=1&{own}"
    _forbidden(as_kbmc("get", "--raw", watch, "--request-timeout=5s"), f"cannot watch {pvcs}")


def test_events_cannot_be_read_or_changed(as_kbmc: Callable[..., Any]) -> None:
    """create on events is the one rule without resourceNames (create cannot be limited by name); it
    must not bring reading or changing other Events with it."""
    _forbidden(as_kbmc("get", "events"), 'cannot list resource "events"')
    _forbidden(as_kbmc("delete", "event", "bmc-a.rights-test"), 'cannot delete resource "events"')
