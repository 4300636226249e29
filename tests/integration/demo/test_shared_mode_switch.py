"""Switching `--kbmc-mode` moves every BMC: dedicated → shared → dedicated, each BMC keeps its boot
override and power history, and is served by the new mode's pod (the old one's goes). The emulator
enforces RBAC; the controller runs as its ServiceAccount with deploy/rbac.yaml, the kbmc pods under
their own ServiceAccounts' tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))

from pod_cluster import pod_cluster

from vmbmc.controller import ControllerOptions, ControllerThread
from vmbmc_devcluster.demo.cluster import ready_endpoint
from vmbmc_devcluster.demo.endpoints import BmcEndpoint
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.testing.waiting import wait_until

SYSTEM = "virtualmachinebmc-system"
VMS = ("demo-vm-1", "demo-vm-2")
pytestmark = pytest.mark.timeout(400)


def ipmitool(e: BmcEndpoint, *args: str) -> str:
    assert e.ipmi_host is not None and e.ipmi_port is not None
    cmd = ["ipmitool", "-I", "lanplus", "-H", e.ipmi_host, "-p", str(e.ipmi_port), "-U", e.username]
    out = subprocess.run([*cmd, "-P", e.password, *args], capture_output=True, text=True, timeout=30)
    return out.stdout


def test_switching_modes_keeps_boot_override_and_history(tmp_path: Path) -> None:
    with pod_cluster(tmp_path, 200, (SYSTEM,)) as (emu, _runner, controller_kc):
        store, reg = emu.emulator.store, emu.emulator.registry
        vm_rt = reg.get("kubevirt.io", "v1", "virtualmachines")
        bmc_rt, deploy_rt = (
            reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs"),
            reg.get("apps", "v1", "deployments"),
        )
        cm_rt = reg.get("", "v1", "configmaps")
        for i in (1, 2):
            emu.call(store.create, vm_rt, sample_vm(i), "default")

        def options(mode: str) -> ControllerOptions:
            return ControllerOptions(
                kubeconfig=str(controller_kc),
                health_port=0,
                health_address="127.0.0.1",
                identity=f"switch-{mode}",
                kbmc_mode=mode,
            )

        def endpoint(vm: str, shared: bool) -> BmcEndpoint | None:
            e = emu.call(ready_endpoint, emu, ("default", vm))
            if e is None or (e.ipmi_port != 10623) != shared or bool(status(vm).get("serving")) != shared:
                return None
            return e

        def status(vm: str) -> dict[str, Any]:
            return dict(emu.call(store.get, bmc_rt, SYSTEM, f"default-{vm}").get("status") or {})

        def dedicated_deployments() -> list[str]:
            items, _ = emu.call(store.list, deploy_rt, SYSTEM)
            return [
                d["metadata"]["name"] for d in items if d["metadata"]["name"].startswith("default-demo-vm")
            ]

        with ControllerThread(options("dedicated")):
            ends = [
                wait_until(lambda v=v: endpoint(v, False), timeout=60, what=f"{v} dedicated") for v in VMS
            ]
            assert "Set Boot Device to pxe" in ipmitool(
                ends[0], "chassis", "bootdev", "pxe", "options=persistent"
            )
            assert "Up/On" in ipmitool(ends[0], "power", "on")
            wait_until(
                lambda: (
                    any(h.get("to") == "On" for h in status(VMS[0]).get("powerHistory") or [])
                    and (status(VMS[0]).get("bootOverride") or {}).get("target") == "Pxe"
                ),
                timeout=30,
                what="history and boot override recorded",
            )
        history = [h["id"] for h in status(VMS[0])["powerHistory"]]

        def kept(end: BmcEndpoint) -> None:
            # Ready may still be the old mode's for a moment: wait for the new pod's answer
            wait_until(lambda: "is on" in ipmitool(end, "power", "status"), timeout=30, what="served")
            assert [h["id"] for h in status(VMS[0])["powerHistory"]][: len(history)] == history
            assert (status(VMS[0]).get("bootOverride") or {}).get("target") == "Pxe"
            assert "Force PXE" in ipmitool(end, "chassis", "bootparam", "get", "5")

        with ControllerThread(options("shared")):
            ends = [wait_until(lambda v=v: endpoint(v, True), 60, f"{v} shared") for v in VMS]
            assert ends[0].ipmi_host == ends[1].ipmi_host and ends[0].ipmi_port != ends[1].ipmi_port
            wait_until(lambda: not dedicated_deployments(), timeout=30, what="the dedicated kbmcs gone")
            kept(ends[0])
            assert "is off" in ipmitool(ends[1], "power", "status")

        with ControllerThread(options("dedicated")):
            ends = [
                wait_until(lambda v=v: endpoint(v, False), timeout=60, what=f"{v} dedicated") for v in VMS
            ]
            wait_until(
                lambda: not (emu.call(store.try_get, cm_rt, SYSTEM, "vmbmc-kbmc-shared") or {}).get("data"),
                timeout=30,
                what="the roster emptied",
            )
            assert all("serving" not in status(vm) for vm in VMS)
            kept(ends[0])
        # neither the controller nor a kbmc met a missing rule on the way (deploy/rbac.yaml, the Roles)
        assert emu.call(lambda: list(emu.emulator.security.denials)) == []
