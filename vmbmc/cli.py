"""`vmbmc` command line: one entry point, one sub-command per process kind.

Each sub-command's implementation lives in its package's `cli.py` and is imported only when that
sub-command runs, so `vmbmc kbmc` never loads the controller or the emulator.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from vmbmc import __version__

# sub-command -> module with `configure(parser)` and `run(args) -> int`
COMMANDS: dict[str, tuple[str, str]] = {
    "emulator": ("vmbmc.emulator.cli", "Run the emulated Kubernetes + KubeVirt API server."),
    "kbmc": ("vmbmc.kbmc.cli", "Run the BMC (IPMI, and Redfish when enabled) for one VM or BMC."),
    "controller": ("vmbmc.controller.cli", "Run the VirtualMachineBMC controller."),
    "demo": ("vmbmc.demo.cli", "Run the whole system on an emulated cluster, on localhost."),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmbmc", description="Virtual BMCs for KubeVirt VMs.")
    parser.add_argument("--version", action="version", version=f"vmbmc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the chosen sub-command's module is imported (its options need it).
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).configure(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
