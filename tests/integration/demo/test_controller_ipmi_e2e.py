"""The whole chain on the emulator: VM → the real controller auto-creates its VirtualMachineBMC and
kbmc Deployment → the pod runner runs that pod as a real `vmbmc kbmc` process → `ipmitool power on`
→ the VM runs → `kubectl describe vmbmc` names the IPMI user; a stop outside the BMC is told so;
the VM deleted takes everything with it. As in a cluster, the emulator enforces RBAC, the controller
runs as its ServiceAccount with deploy/rbac.yaml and the kbmc pod under its own ServiceAccount's token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))
sys.path.insert(0, str(Path(__file__).parents[1] / "kbmc"))

from pod_cluster import pod_cluster

from vmbmc.controller import ControllerOptions, ControllerThread
from vmbmc_devcluster.demo.cluster import ready_endpoint
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until

SYSTEM = "virtualmachinebmc-system"


def test_vm_to_ipmi_to_describe(tmp_path: Path) -> None:
    with pod_cluster(tmp_path, 180, (SYSTEM, "tenant")) as (emu, runner, controller_kc):
        kubeconfig = emu.kubeconfig
        store, reg = emu.emulator.store, emu.emulator.registry
        vm_rt = reg.get("kubevirt.io", "v1", "virtualmachines")
        opts = ControllerOptions(
            kubeconfig=str(controller_kc),
            health_port=0,
            health_address="127.0.0.1",
            resync_seconds=2.0,
            identity="e2e",
        )
        with ControllerThread(opts):
            emu.call(store.create, vm_rt, sample_vm(1, "tenant"), "tenant")
            bmc_rt, pods = (
                reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs"),
                reg.get("", "v1", "pods"),
            )
            name = "tenant-demo-vm-1"
            endpoint = wait_until(
                lambda: emu.call(ready_endpoint, emu, ("tenant", "demo-vm-1")),
                timeout=30,
                what="the auto-created BMC Ready",
            )
            ip, user, password = endpoint.ipmi_host, endpoint.username, endpoint.password
            assert endpoint.bmc == f"{SYSTEM}/{name}" and ip.startswith("127.10."), endpoint
            pod_list, _ = emu.call(store.list, pods, SYSTEM)
            assert pod_list and all(password not in str(p["spec"]) for p in pod_list)  # a Secret volume

            def ipmitool(*args: str) -> subprocess.CompletedProcess[str]:
                cmd = [
                    "ipmitool",
                    "-I",
                    "lanplus",
                    "-H",
                    ip,
                    "-p",
                    "10623",
                    "-U",
                    user,
                    "-P",
                    password,
                    *args,
                ]
                return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

            assert ipmitool("power", "status").stdout.strip() == "Chassis Power is off"
            assert ipmitool("power", "on").stdout.strip() == "Chassis Power Control: Up/On"
            wait_until(lambda: "is on" in ipmitool("power", "status").stdout, what="power on")

            def describe() -> str:
                return subprocess.run(
                    [KUBECTL, "--kubeconfig", str(kubeconfig), "-n", SYSTEM, "describe", "vmbmc", name],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout

            text = wait_until(
                lambda: (d := describe()) and "PoweredOn" in d and d, timeout=20, what="PoweredOn"
            )
            assert "by IPMI user admin from 127.0.0.1" in text, text
            out = ipmitool("chassis", "bootdev", "pxe", "options=persistent")
            assert out.stdout.strip() == "Set Boot Device to pxe", out

            def boot_target() -> str | None:
                status = emu.call(store.get, bmc_rt, SYSTEM, name).get("status") or {}
                return (status.get("bootOverride") or {}).get("target")

            wait_until(
                lambda: boot_target() == "Pxe",
                what="the boot override recorded in the BMC's status, with the kbmc's own rights",
            )
            emu.call(emu.kubevirt.virtctl, "tenant", "demo-vm-1", "stop")
            text = wait_until(
                lambda: (d := describe()) and "PoweredOff" in d and d, timeout=20, what="PoweredOff"
            )
            assert "outside the BMC: " in text, text
            assert "Chassis Power is off" in ipmitool("power", "status").stdout
            # neither identity met a missing rule on the way (a refused request may be retried unseen)
            assert emu.call(lambda: list(emu.emulator.security.denials)) == []
            _kbmc_token_is_its_own_and_refused_the_rest(emu, tmp_path, name)
            emu.call(store.delete, vm_rt, "tenant", "demo-vm-1")
            wait_until(
                lambda: emu.call(store.try_get, bmc_rt, SYSTEM, name) is None, timeout=30, what="BMC deleted"
            )
            wait_until(lambda: not runner._running, timeout=30, what="kbmc process gone")


def _kbmc_token_is_its_own_and_refused_the_rest(emu: EmulatorThread, tmp_path: Path, bmc: str) -> None:
    store, pods = emu.emulator.store, emu.emulator.registry.get("", "v1", "pods")
    (pod,) = emu.call(store.list, pods, SYSTEM, label_selector=f"virtualmachinebmc.kubevirt.io/bmc={bmc}")[0]
    pod_kc = tmp_path / "work" / "pods" / f"{SYSTEM}-{pod['metadata']['name']}" / "kubeconfig"
    assert emu.token not in pod_kc.read_text()  # its own token, as projected, never the admin's
    token = yaml.safe_load(pod_kc.read_text())["users"][0]["user"]["token"]
    with httpx.Client(base_url=emu.url, verify=emu.ca_file, timeout=10) as http:
        auth = {"Authorization": f"Bearer {token}"}
        denied = http.get(f"/api/v1/namespaces/{SYSTEM}/secrets", headers=auth)
        assert denied.status_code == 403, denied.text  # no Secrets for a kbmc: they arrive as a volume
        assert "cannot list resource" in denied.json()["message"]
        other = http.get("/apis/kubevirt.io/v1/namespaces/tenant/virtualmachines", headers=auth)
        assert other.status_code == 403, other.text  # only its own VM, by name
