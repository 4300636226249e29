"""`vmbmc kbmc --vm NS/NAME` for a VM that does not exist (yet): it says so at start, IPMI answers D5h
(not supported in present state) and Redfish 404 ResourceNotFound; once the VM is created it serves it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from kbmc_process import free_tcp_port, start_kbmc
from machine_cluster import Cluster

from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.waiting import wait_until


def test_kbmc_for_a_missing_vm(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> None:
    redfish_port = free_tcp_port()
    kbmc = start_kbmc(
        str(emu.kubeconfig), tmp_path, "--vm", "default/later-vm",
        extra=("--redfish-port", str(redfish_port), "--redfish-http"), restricted=False,
    )  # fmt: skip
    try:
        logged = [json.loads(line) for line in kbmc.logs().splitlines() if line.startswith("{")]
        warning = next(e for e in logged if e["message"].startswith("VM not present"))
        assert warning["levelname"] == "WARNING" and warning["vm"] == "default/later-vm", warning
        assert "IPMI answers D5h" in warning["message"] and "Redfish 404" in warning["message"]

        out = kbmc.ipmitool("power", "status")
        assert out.returncode != 0 and "Command not supported in present state" in out.stderr, out
        system = f"http://127.0.0.1:{redfish_port}/redfish/v1/Systems/later-vm"
        r = httpx.get(system, auth=(kbmc.user, kbmc.password), timeout=10)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["@Message.ExtendedInfo"][0]["MessageId"].endswith("ResourceNotFound")

        cluster.create_vm("later-vm")
        wait_until(lambda: "is off" in kbmc.ipmitool("power", "status").stdout, 15, "the VM served")
        assert httpx.get(system, auth=(kbmc.user, kbmc.password), timeout=10).status_code == 200
    finally:
        kbmc.stop()
