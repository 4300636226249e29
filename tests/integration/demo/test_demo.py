"""`vmbmc demo` as a user runs it: the endpoints file appears, the printed commands work, SIGTERM stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import KUBECTL

VMBMC = str(Path(sys.executable).with_name("vmbmc"))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def demo(tmp_path):
    endpoints = tmp_path / "endpoints.json"
    proc = subprocess.Popen(
        [
            VMBMC,
            "demo",
            "--vms",
            "2",
            "--endpoints-file",
            str(endpoints),
            "--workdir",
            str(tmp_path / "work"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started = time.monotonic()
    deadline = started + 30
    while not endpoints.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    if not endpoints.exists():
        proc.kill()
        pytest.fail(f"no endpoints file; demo output:\n{proc.stdout.read() if proc.stdout else ''}")
    yield proc, json.loads(endpoints.read_text()), time.monotonic() - started
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def test_demo_endpoints_commands_and_clean_stop(demo):
    proc, doc, startup = demo
    assert startup < 10, f"the demo took {startup:.1f} s to be ready"
    assert set(doc) == {"kubeconfig", "bmcs"} and len(doc["bmcs"]) == 2
    bmc = doc["bmcs"][0]
    assert bmc["vm"] == "default/demo-vm-1" and len(bmc["password"]) >= 20
    kubectl = [KUBECTL, "--kubeconfig", doc["kubeconfig"]]
    assert "demo-vm-1" in subprocess.run([*kubectl, "get", "vm"], capture_output=True, text=True).stdout
    # The printed Redfish commands, as curl would send them.
    system = f"{bmc['redfish']}/Systems/demo-vm-1"
    auth = (bmc["username"], bmc["password"])
    with httpx.Client(verify=False, auth=auth, timeout=10) as http:
        assert http.get(system).json()["PowerState"] == "Off"
        reset = http.post(f"{system}/Actions/ComputerSystem.Reset", json={"ResetType": "On"})
        assert reset.status_code == 204, reset.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and http.get(system).json()["PowerState"] != "On":
            time.sleep(0.2)
        assert http.get(system).json()["PowerState"] == "On"
    status = subprocess.run(
        [*kubectl, "get", "vm", "demo-vm-1", "-o", "jsonpath={.status.printableStatus}"],
        capture_output=True,
        text=True,
    ).stdout
    assert status == "Running"
    described = subprocess.run(
        [*kubectl, "describe", "vm", "demo-vm-1"], capture_output=True, text=True
    ).stdout
    assert "PowerOnRequested" in described and "Redfish user admin" in described
    # SIGTERM: everything stops within 10 s and nothing the demo started survives.
    children = _children(proc.pid)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 10
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
