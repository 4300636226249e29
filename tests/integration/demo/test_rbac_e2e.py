"""Least privilege you can prove (issue 12, item 3): the same chain as test_controller_ipmi_e2e with the
emulator enforcing RBAC. The controller runs as its ServiceAccount bound to deploy/rbac.yaml, and every
kbmc pod gets its own ServiceAccount's token; a missing rule fails here as it would in a cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))
sys.path.insert(0, str(Path(__file__).parents[1] / "kbmc"))

from kbmc_process import wait_until
from machine_cluster import ROOT, crd_files

from vmbmc.controller import ControllerOptions, ControllerThread
from vmbmc.demo.cluster import ready_endpoint
from vmbmc.demo.identity import install_controller_identity
from vmbmc.demo.podrunner import LocalPodRunner
from vmbmc.demo.samples import sample_vm
from vmbmc.emulator.harness import EmulatorThread

SYSTEM = "virtualmachinebmc-system"


def test_controller_and_kbmc_under_their_own_identities(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    runner = LocalPodRunner(str(kubeconfig), tmp_path / "work", first_address=200)
    with EmulatorThread(
        kubeconfig=kubeconfig,
        crds=crd_files(),
        pod_runner=runner,
        rbac=True,
        kubevirt_options={"start_delay": 0.2, "stop_delay": 0.2},
    ) as emu:
        runner.attach(emu.emulator, url=emu.url, ca_file=emu.ca_file)
        store, reg = emu.emulator.store, emu.emulator.registry
        ns_rt = reg.get("", "v1", "namespaces")
        for ns in (SYSTEM, "tenant"):
            emu.call(
                store.create, ns_rt, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None
            )
        # What `kubectl apply -k deploy/` installs for the controller: its ServiceAccount and RBAC.
        controller_kc = tmp_path / "controller.kubeconfig"
        install_controller_identity(emu, ROOT / "deploy" / "rbac.yaml", controller_kc)
        opts = ControllerOptions(
            kubeconfig=str(controller_kc),
            health_port=0,
            health_address="127.0.0.1",
            resync_seconds=2.0,
            identity="rbac-e2e",
        )
        with ControllerThread(opts):
            emu.call(
                store.create,
                reg.get("kubevirt.io", "v1", "virtualmachines"),
                sample_vm(1, "tenant"),
                "tenant",
            )
            bmc_rt, pods = (
                reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs"),
                reg.get("", "v1", "pods"),
            )
            name = "tenant-demo-vm-1"
            endpoint = wait_until(
                lambda: emu.call(ready_endpoint, emu, ("tenant", "demo-vm-1")),
                timeout=40,
                what="the auto-created BMC Ready (controller under its own ServiceAccount)",
            )
            ip, password = endpoint.ipmi_host, endpoint.password
            (pod,) = emu.call(
                store.list, pods, SYSTEM, label_selector=f"virtualmachinebmc.kubevirt.io/bmc={name}"
            )[0]
            pod_kc = tmp_path / "work" / "pods" / f"{SYSTEM}-{pod['metadata']['name']}" / "kubeconfig"
            assert emu.token not in pod_kc.read_text()  # its own token, never the admin's
            pod_token = yaml.safe_load(pod_kc.read_text())["users"][0]["user"]["token"]
            with httpx.Client(base_url=emu.url, verify=emu.ca_file, timeout=10) as http:
                auth = {"Authorization": f"Bearer {pod_token}"}
                denied = http.get(f"/api/v1/namespaces/{SYSTEM}/secrets", headers=auth)
                assert denied.status_code == 403, denied.text  # RBAC is on: no Secrets for a kbmc
                assert "cannot list resource" in denied.json()["message"]
                other = http.get("/apis/kubevirt.io/v1/namespaces/tenant/virtualmachines", headers=auth)
                assert other.status_code == 403, other.text  # only its own VM, by name

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
                    "admin",
                    "-P",
                    password,
                    *args,
                ]
                return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

            assert ipmitool("power", "on").stdout.strip() == "Chassis Power Control: Up/On"
            wait_until(
                lambda: "is on" in ipmitool("power", "status").stdout,
                what="power on with the kbmc's own rights",
            )
            out = ipmitool("chassis", "bootdev", "pxe", "options=persistent")
            assert out.stdout.strip() == "Set Boot Device to pxe", out
            wait_until(
                lambda: (
                    (
                        emu.call(store.get, bmc_rt, SYSTEM, name).get("status", {}).get("bootOverride") or {}
                    ).get("target")
                    == "Pxe"
                ),
                what="the boot override recorded in the BMC's status",
            )
            events, _ = emu.call(store.list, reg.get("", "v1", "events"), SYSTEM)
            reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == name}
            assert {"PowerOnRequested", "PoweredOn"} <= reasons, reasons
