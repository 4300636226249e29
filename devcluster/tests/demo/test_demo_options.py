"""`vmbmc demo --redfish-http` with the controller, and the demo's temporary workdir (kubeconfigs and
passwords) gone after it stops; a `--workdir` the user gave stays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from vmbmc_devcluster.testing.demo_process import DemoProcess, start_demo
from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until

VMBMC = str(Path(sys.executable).with_name("vmbmc"))


def _start(tmp: Path, *args: str) -> tuple[DemoProcess, dict]:
    (tmp / "tmp").mkdir()
    demo = start_demo(tmp, "--vms", "1", *args, timeout=40, env={**os.environ, "TMPDIR": str(tmp / "tmp")})
    return demo, demo.endpoints


def _stop(demo: DemoProcess) -> None:
    assert demo.stop(timeout=10) == 0
    assert "Traceback" not in demo.output(), demo.output()[-3000:]  # nothing on the way out either


def test_redfish_http_with_the_controller_and_temporary_workdir_removed(tmp_path: Path) -> None:
    proc, doc = _start(tmp_path, "--redfish-http")
    try:
        (bmc,) = doc["bmcs"]
        assert bmc["bmc"] is not None, "the controller made this BMC (not --standalone)"
        assert bmc["redfish"].startswith("http://"), bmc
        r = httpx.get(f"{bmc['redfish']}/Systems/demo-vm-1", auth=(bmc["username"], bmc["password"]))
        assert r.status_code == 200 and r.json()["PowerState"] == "Off"
        ns, name = bmc["bmc"].split("/")
        spec = subprocess.run(
            [KUBECTL, "--kubeconfig", doc["kubeconfig"], "-n", ns, "get", "vmbmc", name,
             "-o", "jsonpath={.spec.redfish}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert json.loads(spec.stdout) == {"enabled": True, "insecureHTTP": True}
        workdir = Path(doc["kubeconfig"]).parent
        assert workdir.parent == tmp_path / "tmp" and workdir.name.startswith("vmbmc-demo-")
    finally:
        _stop(proc)
    assert list((tmp_path / "tmp").iterdir()) == [], "the temporary workdir must go with the demo"


def test_given_workdir_stays(tmp_path: Path) -> None:
    work = tmp_path / "work"
    proc, doc = _start(tmp_path, "--standalone", "--workdir", str(work))
    _stop(proc)
    assert Path(doc["kubeconfig"]).parent == work and (work / "kubeconfig").exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_temporary_workdir_removed_when_stopped_while_starting(tmp_path: Path) -> None:
    """SIGTERM before the demo is ready (wherever in its start it lands) still removes the workdir."""
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen(
        [VMBMC, "demo", "--vms", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
        start_new_session=True,
    )
    try:
        wait_until(lambda: list((tmp_path / "tmp").iterdir()), 20, "the temporary workdir")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert list((tmp_path / "tmp").iterdir()) == []
