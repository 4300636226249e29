"""The `vmbmc` sub-commands this distribution adds (entry point group `vmbmc.commands`).

Each is (module with `configure(parser)` and `run(args) -> int`, help text), the shape vmbmc/cli.py
expects. This module imports nothing, so listing the commands loads neither the emulator nor the demo.
"""

EMULATOR = ("vmbmc_devcluster.emulator.cli", "Run the emulated Kubernetes + KubeVirt API server.")
DEMO = ("vmbmc_devcluster.demo.cli", "Run the whole system on an emulated cluster, on localhost.")
