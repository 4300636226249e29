"""The product's wheel is the product alone and complete: built from `git archive HEAD`, it carries copies
of crds/ and deploy/ identical to them and no module of the development distribution (the emulator, the
pod runner, the demo); it requires none of that distribution's dependencies; installed alone into a fresh
venv outside the checkout it imports every one of its modules with its runtime dependencies only (no
pyghmi, no `kubernetes`), and its `vmbmc demo` names the pip command that adds the demo. With the
development distribution's wheel beside it, `vmbmc demo` serves a BMC that ipmitool reaches as printed,
also when started from a directory holding a folder named `vmbmc`. The Dockerfile installs that product
wheel only.

Building needs setuptools and wheel for pip's isolated build (from pip's cache, its find-links or
PyPI); installing needs the runtime dependencies the same way."""

from __future__ import annotations

import email.parser
import io
import os
import re
import shlex
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.processes import kbmc_pid, pids_running
from vmbmc_devcluster.testing.demo_process import start_demo

BUILD_TIMEOUT = 300
# What only the development distribution uses: never a requirement of the product.
DEVELOPMENT_ONLY = ("cel-python", "wsproto", "vmbmc-devcluster")  # aiohttp: the product posts events


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed tree (`git archive HEAD`), as a fresh clone has it."""
    src = tmp_path_factory.mktemp("archive") / "src"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"], capture_output=True, timeout=120
    )
    assert archive.returncode == 0, archive.stderr.decode()[-2000:]
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(src, filter="data")
    return src


def build(directory: Path, dist: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(directory)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.fixture(scope="module")
def wheels(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The product's wheel (the repository root) and the development distribution's (devcluster/)."""
    dist = tmp_path_factory.mktemp("dist")
    build(source, dist)
    build(source / "devcluster", dist)
    (product,) = dist.glob("vmbmc-*.whl")
    (development,) = dist.glob("vmbmc_devcluster-*.whl")
    return {"product": product, "development": development}


@pytest.fixture(scope="module")
def wheel(wheels: dict[str, Path]) -> Path:
    return wheels["product"]


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


def modules(wheel: Path) -> list[str]:
    """The wheel's Python modules, by dotted name."""
    with zipfile.ZipFile(wheel) as whl:
        files = [n for n in whl.namelist() if n.endswith(".py")]
    return sorted(re.sub(r"(\.__init__)?\.py$", "", n).replace("/", ".") for n in files)


@pytest.mark.timeout(600)
def test_the_product_wheel_holds_nothing_of_the_development_distribution(wheel: Path) -> None:
    names = modules(wheel)
    assert "vmbmc.cli" in names and "vmbmc.kbmc.server" in names  # the product is there
    assert {n.split(".")[0] for n in names} == {"vmbmc"}
    development = [n for n in names if re.search(r"emulator|demo|podrunner|devcluster", n)]
    assert development == []


@pytest.mark.timeout(600)
def test_the_product_requires_nothing_only_the_development_distribution_uses(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        (metadata,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        message = email.parser.Parser().parsestr(whl.read(metadata).decode())
    requires = message.get_all("Requires-Dist") or []
    runtime = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("kopf") for r in runtime), requires  # the runtime requirements were read
    named = [r for r in runtime if re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower() in DEVELOPMENT_ONLY]
    assert named == []


def test_the_dockerfile_installs_the_product_wheel_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [w for line in dockerfile.splitlines() if line.startswith("COPY ") and "--from" not in line
              for w in line.split()[1:-1]]  # fmt: skip
    assert "vmbmc" in copied and not any("devcluster" in w for w in copied), copied
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    wheel_only = r"pip install --no-cache-dir (-c /wheels/constraints.txt )?/wheels/vmbmc-\*\.whl"
    assert installs and all(re.search(wheel_only, i) for i in installs), installs
    assert "devcluster" not in "".join(installs)


def fresh_venv(directory: Path, *wheels: Path) -> Path:
    """A fresh venv, outside the checkout, with these wheels and their runtime dependencies only."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, timeout=120)
    out = subprocess.run(
        # the versions CI and the image install (constraints.txt), not whatever is newest today
        [str(directory / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
         *map(str, wheels)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return directory


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The product's wheel alone."""
    return fresh_venv(tmp_path_factory.mktemp("venv") / "venv", wheel)


@pytest.fixture(scope="module")
def demo_venv(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The product's wheel and the development distribution's, as `pip install -e . -e ./devcluster`
    would install them from a checkout."""
    return fresh_venv(tmp_path_factory.mktemp("demo-venv") / "venv", wheels["product"], wheels["development"])


def outside(venv: Path) -> dict[str, str]:
    """The environment of a user of that venv: nothing from the checkout or the test venv on the paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG")}
    env["PATH"] = os.pathsep.join(
        [str(venv / "bin"), *(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)]
    )
    return env


def run_in(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=outside(venv),
        timeout=120,
    )


@pytest.mark.timeout(600)
def test_runtime_dependencies_only(venv: Path, tmp_path: Path) -> None:
    # extras only (test and bench tools), and what only the development distribution uses (wsproto is
    # the product's too now: httpx2[ws] frames the VMI console with it)
    for module in ("pyghmi", "kubernetes", "celpy", "vmbmc_devcluster"):
        out = run_in(venv, "python", "-c", f"import {module}", cwd=tmp_path)
        assert out.returncode != 0, f"{module} is installed with the product's runtime dependencies"


@pytest.mark.timeout(600)
def test_every_module_of_the_product_wheel_imports_on_its_own(
    wheel: Path, venv: Path, tmp_path: Path
) -> None:
    names = [n for n in modules(wheel) if not n.endswith("__main__")]  # __main__ would run the CLI
    code = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
        "print('\\n'.join(failed)); sys.exit(1 if failed else 0)\n"
    )
    out = run_in(venv, "python", "-c", code, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("command", ["demo", "emulator"])
def test_the_product_alone_names_the_pip_command_for_the_demo(
    venv: Path, tmp_path: Path, command: str
) -> None:
    out = run_in(venv, "vmbmc", command, "--vms", "200", cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == "", out
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"vmbmc {command}: not installed: ") and "pip install -e ./devcluster" in line


@pytest.mark.timeout(600)
def test_demo_from_the_wheels_answers_ipmitool(demo_venv: Path, tmp_path: Path) -> None:
    venv = demo_venv
    # Started where a folder named like each package sits: the demo and its pods must run the installed
    # packages, never these.
    for shadow in ("vmbmc", "vmbmc_devcluster"):
        (tmp_path / shadow).mkdir()
        (tmp_path / shadow / "__init__.py").write_text("raise ImportError('the folder in the cwd')\n")
    demo = start_demo(tmp_path, "--vms", "1", timeout=90, vmbmc=str(venv / "bin" / "vmbmc"),
                      env=outside(venv), cwd=tmp_path)  # fmt: skip
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
