"""An emulated Kubernetes + KubeVirt API server, for the tests and `vmbmc demo` only."""

from vmbmc.emulator.emulator import Emulator
from vmbmc.emulator.harness import EmulatorThread, write_kubeconfig

__all__ = ["Emulator", "EmulatorThread", "write_kubeconfig"]
