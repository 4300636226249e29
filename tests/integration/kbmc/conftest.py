"""Fixtures for the IPMI front end: the real `vmbmc kbmc` process against the emulator."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))

from kbmc_process import KbmcProcess, serve_bmc
from machine_cluster import Cluster, crd_files

from vmbmc_devcluster.emulator.harness import EmulatorThread


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    with (
        tempfile.TemporaryDirectory(prefix="vmbmc-kbmc-") as tmp,
        EmulatorThread(
            kubeconfig=Path(tmp) / "kubeconfig",
            crds=crd_files(),
            kubevirt_options={"start_delay": 0.2, "stop_delay": 0.2},
        ) as emulator,
    ):
        yield emulator


@pytest.fixture(scope="module")
def cluster(emu: EmulatorThread) -> Cluster:
    return Cluster(emu)


@pytest.fixture(scope="module")
def kbmc(
    emu: EmulatorThread, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KbmcProcess]:
    """One VM with a VirtualMachineBMC, served by a `vmbmc kbmc --bmc` process on 127.0.0.1 under the
    ServiceAccount and Roles the controller would give it."""
    cluster.create_vm("ipmi-vm")
    proc = serve_bmc(emu, cluster, tmp_path_factory.mktemp("kbmc"), "ipmi-bmc", "ipmi-vm").kbmc
    yield proc
    proc.stop()


@pytest.fixture(scope="module", autouse=True)
def kbmc_roles_suffice(emu: EmulatorThread) -> Iterator[None]:
    """The Roles the controller gives a kbmc suffice for everything this suite does: the emulator
    refused none of the kbmc ServiceAccounts' requests (a client may retry a 403 and go on)."""
    yield
    denials = emu.call(lambda: list(emu.emulator.security.denials))
    assert [
        m for user, m in denials if user.startswith("system:serviceaccount:") and user.endswith("-kbmc")
    ] == []
