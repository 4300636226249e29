"""Fixtures of the fuzzers: one real `vmbmc kbmc` (IPMI and HTTPS Redfish) against the emulator."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "integration" / "kbmc"))
sys.path.insert(0, str(Path(__file__).parents[1] / "integration" / "machine"))

from kbmc_process import KbmcProcess, serve_bmc
from machine_cluster import Cluster, crd_files

from vmbmc_devcluster.emulator.harness import EmulatorThread


@dataclass
class Target:
    kbmc: KbmcProcess
    cluster: Cluster
    bmc: str
    vm: str
    redfish: str  # https://127.0.0.1:PORT

    def snapshot(self) -> dict[str, object]:
        """What a fuzzed request must never change: the VM's spec, its VMI, the BMC's requests and
        boot override."""
        vm, bmc = self.cluster.vm(self.vm) or {}, self.cluster.bmc(self.bmc) or {}
        status = bmc.get("status", {})
        return {
            "vm_spec": vm.get("spec"),
            "vm_generation": vm.get("metadata", {}).get("generation"),
            "vmi": self.cluster.vmi(self.vm) is not None,
            "requests": status.get("requests", []),
            "boot": status.get("bootOverride"),
        }


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    with (
        tempfile.TemporaryDirectory(prefix="vmbmc-fuzz-") as tmp,
        EmulatorThread(kubeconfig=Path(tmp) / "kubeconfig", crds=crd_files()) as emulator,
    ):
        yield emulator


@pytest.fixture(scope="module")
def target(emu: EmulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    cluster = Cluster(emu)
    cluster.create_vm("fuzz-vm")
    served = serve_bmc(emu, cluster, tmp_path_factory.mktemp("fuzz"), "fuzz-bmc", "fuzz-vm", redfish="https")
    yield Target(served.kbmc, cluster, "fuzz-bmc", "fuzz-vm", served.redfish)
    served.kbmc.stop()
