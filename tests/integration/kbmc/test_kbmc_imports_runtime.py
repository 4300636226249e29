"""A running `vmbmc kbmc --bmc` with Redfish enabled, after serving ipmitool (lanplus, so AES) and a
Redfish GET over its self-signed HTTPS, has imported none of the libraries it must not load
(docs/kbmc.md, "Memory"). Python's own import log (PYTHONPROFILEIMPORTTIME) lists every module the
process imported, lazy imports included."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from kbmc_process import PASSWORD, USER, free_tcp_port, kbmc_kubeconfig, start_kbmc
from machine_cluster import Cluster

from vmbmc.emulator.harness import EmulatorThread

FORBIDDEN = {
    "kubernetes",
    "kubernetes_asyncio",
    "kopf",
    "pyghmi",
    "aiohttp",
    "cryptography",
    "prometheus_client",
    "wsproto",  # the emulator's WebSocket server; the kbmc's console client is its own
    "websockets",
}


def test_running_kbmc_imports(
    emu: EmulatorThread, cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"imports-{time.monotonic_ns()}"
    cluster.create_vm(f"{name}-vm")
    body = {
        "apiVersion": "virtualmachine.kubevirt.io/v1",
        "kind": "VirtualMachineBMC",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "virtualMachineRef": {"namespace": "default", "name": f"{name}-vm"},
            "redfish": {"enabled": True},
        },
    }
    uid = emu.call(emu.emulator.store.create, cluster.bmcs, body, "default")["metadata"]["uid"]
    kubeconfig = kbmc_kubeconfig(emu, tmp_path, "default", name, f"{name}-vm", uid)
    port = free_tcp_port()
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # the kbmc inherits it; its stderr goes to its log
    kbmc = start_kbmc(kubeconfig, tmp_path, "--bmc", f"default/{name}", extra=("--redfish-port", str(port)))
    try:
        out = kbmc.ipmitool("-C", "17", "power", "status")
        assert out.returncode == 0, out.stderr
        answer = httpx.get(
            f"https://127.0.0.1:{port}/redfish/v1/Systems", auth=(USER, PASSWORD), verify=False, timeout=10
        )
        assert answer.status_code == 200
    finally:
        kbmc.stop()
    imported = {
        m.group(1).split(".")[0]
        for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", kbmc.logs(), re.M)
    }
    assert {"vmbmc", "uvicorn", "starlette"} <= imported  # the log is complete: Redfish was loaded
    assert sorted(imported & FORBIDDEN) == []
