"""`vmbmc` command line: one entry point, one sub-command per process kind.

Each sub-command's implementation lives in its package's `cli.py` and is imported only when that
sub-command runs, so `vmbmc kbmc` never loads the controller or the emulator.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from vmbmc import __version__
from vmbmc.usage import UsageError

# sub-command -> module with `configure(parser)` and `run(args) -> int`
COMMANDS: dict[str, tuple[str, str]] = {
    "emulator": ("vmbmc.emulator.cli", "Run the emulated Kubernetes + KubeVirt API server."),
    "kbmc": ("vmbmc.kbmc.cli", "Run the BMC (IPMI, and Redfish when enabled) for one VM or BMC."),
    "controller": ("vmbmc.controller.cli", "Run the VirtualMachineBMC controller."),
    "demo": ("vmbmc.demo.cli", "Run the whole system on an emulated cluster, on localhost."),
}


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each sub-command's (whose usage a mistake in its flags prints)."""
    parser = argparse.ArgumentParser(prog="vmbmc", description="Virtual BMCs for KubeVirt VMs.")
    parser.add_argument("--version", action="version", version=f"vmbmc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the chosen sub-command's module is imported (its options need it).
    chosen = next((a for a in argv if a in COMMANDS), None)
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        parsers[name] = sp
        if name == chosen:
            importlib.import_module(module).configure(sp)
    return parser, parsers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, parsers = build_parser(argv)
    # parse_args would report a sub-command's unknown flag with the top-level usage
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parsers[args.command].error(
            f"unrecognized arguments: {' '.join(unknown)} (see 'vmbmc {args.command} --help')"
        )
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except UsageError as err:
        print(f"vmbmc {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # one line, not a traceback; -v shows where
        if getattr(args, "verbose", False):
            traceback.print_exc()
        message = str(getattr(err, "message", "") or err) or type(err).__name__
        print(f"vmbmc {args.command}: {message.splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
