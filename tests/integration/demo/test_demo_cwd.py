"""`vmbmc demo` started where a folder named `vmbmc` lies (the parent of a clone, say): its pods must not
import that folder instead of the package; and a relative `--workdir` still works for them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from vmbmc_devcluster.testing.demo_process import start_demo


def test_demo_from_a_directory_holding_a_vmbmc_folder(tmp_path: Path) -> None:
    (tmp_path / "vmbmc").mkdir()  # what `git clone …/vmbmc` leaves in the current directory
    (tmp_path / "vmbmc" / "README.md").write_text("a clone, not the package\n")
    demo = start_demo(tmp_path, "--vms", "1", "--workdir", "work", cwd=tmp_path, timeout=60)
    try:
        (bmc,) = demo.endpoints["bmcs"]
        assert bmc["bmc"] is not None, "the controller's kbmc pod answers, not an in-process BMC"
        ipmi = bmc["ipmi"]
        out = subprocess.run(
            ["ipmitool", "-I", "lanplus", "-H", ipmi["host"], "-p", str(ipmi["port"]),
             "-U", bmc["username"], "-P", bmc["password"], "power", "status"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.stdout.strip() == "Chassis Power is off", (out.stdout, out.stderr)
        pod_logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "work" / "pods").rglob("*.log"))
        assert "cannot import name" not in pod_logs, pod_logs[-3000:]
    finally:
        assert demo.stop() == 0, demo.output()[-3000:]


def test_standalone_redfish_demo_from_a_directory_holding_a_vmbmc_folder(tmp_path: Path) -> None:
    """The in-process BMCs' Redfish certificate is made by a child `python -m vmbmc.redfish.tls`: it too
    must find the package, not the folder."""
    (tmp_path / "vmbmc").mkdir()
    demo = start_demo(tmp_path, "--vms", "1", "--standalone", "--redfish", cwd=tmp_path, timeout=60)
    try:
        (bmc,) = demo.endpoints["bmcs"]
        r = httpx.get(f"{bmc['redfish']}/Systems/demo-vm-1", auth=(bmc["username"], bmc["password"]),
                      verify=False, timeout=10)  # fmt: skip
        assert r.status_code == 200 and r.json()["PowerState"] == "Off", r.text
    finally:
        assert demo.stop() == 0, demo.output()[-3000:]
