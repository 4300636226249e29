"""Fixtures for the state machine against the emulator: an EmulatorThread with the BMC CRD."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from machine_cluster import Cluster, crd_files

from vmbmc_devcluster.emulator.harness import EmulatorThread


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    with (
        tempfile.TemporaryDirectory(prefix="vmbmc-machine-") as tmp,
        EmulatorThread(
            kubeconfig=Path(tmp) / "kubeconfig",
            crds=crd_files(),
            kubevirt_options={"start_delay": 0.1, "stop_delay": 0.1},
        ) as emulator,
    ):
        yield emulator


@pytest.fixture(scope="module")
def cluster(emu: EmulatorThread) -> Cluster:
    return Cluster(emu)
