"""The wheel is complete: built from the repository's files, it carries copies of crds/ and deploy/
identical to them, installs into a fresh venv outside the checkout with its runtime dependencies only
(no pyghmi, no `kubernetes`), and `vmbmc demo` from there serves a BMC that ipmitool reaches as printed.

Building needs setuptools and wheel for pip's isolated build (from pip's cache, its find-links or
PyPI); installing needs the runtime dependencies the same way."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.demo_process import start_demo
from tests.processes import kbmc_pid, pids_running

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "vmbmc", "crds", "deploy")
BUILD_TIMEOUT = 300


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built by pip from a copy of the repository's files (so the checkout stays clean)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "_manifests")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (built,) = (base / "dist").glob("vmbmc-*.whl")
    return built


def files_under(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.timeout(600)
def test_packaged_manifests_are_the_repositorys(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        for name in ("crds", "deploy"):
            prefix = f"vmbmc/_manifests/{name}/"
            packaged = {n[len(prefix) :]: whl.read(n) for n in whl.namelist() if n.startswith(prefix)}
            assert packaged == files_under(ROOT / name), f"vmbmc/_manifests/{name} differs from {name}/"
        names = whl.namelist()
    assert not any(n.startswith("tests/") for n in names)


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv, outside the checkout, with the wheel and its runtime dependencies only."""
    env_dir = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    out = subprocess.run(
        # the versions CI and the image install (constraints.txt), not whatever is newest today
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
         str(wheel)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return env_dir


@pytest.fixture
def outside_env(venv: Path) -> dict[str, str]:
    """The environment of a user of that venv: nothing from the checkout or the test venv on the paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG")}
    env["PATH"] = os.pathsep.join(
        [str(venv / "bin"), *(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)]
    )
    return env


@pytest.mark.timeout(600)
def test_runtime_dependencies_only(venv: Path, outside_env: dict[str, str], tmp_path: Path) -> None:
    for module in ("pyghmi", "kubernetes"):  # extras only: test and bench tools
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c", f"import {module}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=outside_env,
            timeout=60,
        )
        assert out.returncode != 0, f"{module} is installed with the runtime dependencies"


@pytest.mark.timeout(600)
def test_demo_from_the_wheel_answers_ipmitool(
    venv: Path, outside_env: dict[str, str], tmp_path: Path
) -> None:
    demo = start_demo(tmp_path, "--vms", "1", timeout=90, vmbmc=str(venv / "bin" / "vmbmc"), env=outside_env,
                      cwd=tmp_path)  # fmt: skip
    proc = demo.proc
    try:
        (bmc,) = demo.endpoints["bmcs"]
        ipmi = bmc["ipmi"]
        pid = kbmc_pid(ipmi["host"])
        assert pid is not None
        argv0 = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[0].decode()
        assert argv0.startswith(str(venv)), argv0  # the pod's process runs the installed package
        command = (
            f"ipmitool -I lanplus -H {ipmi['host']} -p {ipmi['port']} -U {bmc['username']} "
            f"-P {shlex.quote(bmc['password'])} power status"
        )
        out = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "Chassis Power is off", (command, out.stderr)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        demo.kill()
    # nothing of the demo outlives it (another run may take the address: look for our venv's processes)
    assert pids_running(str(venv)) == []
