"""An emulated Kubernetes + KubeVirt API server, for the tests and `vmbmc demo` only."""

from vmbmc_devcluster.emulator.emulator import Emulator
from vmbmc_devcluster.emulator.harness import EmulatorThread, write_kubeconfig

__all__ = ["Emulator", "EmulatorThread", "write_kubeconfig"]
