"""The pytest plugin both test trees load (`-p vmbmc_devcluster.testing.plugin` in their addopts).

- `emulator` (module scope): an EmulatorThread with KubeVirt and vmbmc's CRD; `.kubeconfig`, `.url`,
  `.call(fn, ...)` to run code on its loop, `.kubevirt` for the fake KubeVirt's test hooks.
  With `--kubeconfig PATH` the contract tests run against that (real) cluster instead; tests that need the
  emulator's hooks skip there.
- `kubectl`: run the venv's kubectl against the emulator (or the given cluster), returning CompletedProcess.

One plugin rather than a conftest in each tree: two conftests adding the same `--kubeconfig` option
would clash when one pytest run collects both trees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# The kubernetes client reads KUBECONFIG at import time (a default-location constant,
# which kopf's login uses too): fix it before any test module imports it.
_KUBECONFIG = Path(tempfile.mkdtemp(prefix="vmbmc-tests-")) / "kubeconfig"
os.environ["KUBECONFIG"] = str(_KUBECONFIG)

import pytest  # noqa: E402

from vmbmc import manifests  # noqa: E402
from vmbmc_devcluster.emulator.harness import EmulatorThread  # noqa: E402

KUBECTL = (
    shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl") or "kubectl"
)


def crd_files() -> list[Path]:
    """vmbmc's CustomResourceDefinition files (`crds/`, or a wheel's packaged copy)."""
    directory = Path(str(manifests.root().joinpath("crds")))
    return [p for p in sorted(directory.glob("*.yaml")) if "CustomResourceDefinition" in p.read_text()]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kubeconfig", default=None, help="run the contract tests against this (real) cluster")


class RealCluster:
    """Stand-in for EmulatorThread when --kubeconfig names a real cluster (no test hooks)."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.kubevirt = None
        self.url = ""

    def call(self, *args: object, **kwargs: object) -> None:
        pytest.skip("needs the emulator's test hooks")


@pytest.fixture(scope="module")
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorThread | RealCluster]:
    real = request.config.getoption("--kubeconfig")
    if real:
        yield RealCluster(real)
        return
    with EmulatorThread(kubeconfig=_KUBECONFIG, crds=crd_files()) as emu:
        yield emu


@pytest.fixture
def kubectl(emulator: EmulatorThread) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(
        *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [KUBECTL, "--kubeconfig", str(emulator.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run
