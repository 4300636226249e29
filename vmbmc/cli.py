"""`vmbmc` command line: one entry point, one sub-command per process kind.

Each sub-command's implementation lives in its package's `cli.py` and is imported only when that
sub-command runs, so `vmbmc kbmc` never loads the controller. `vmbmc demo` and `vmbmc emulator` come
from the development distribution (vmbmc-devcluster, devcluster/ in the repository) through the entry
point group `vmbmc.commands`; the product never imports it, and without it those two names answer with
the pip command that adds them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points

from vmbmc import __version__
from vmbmc.usage import UsageError

# sub-command -> (module with `configure(parser)` and `run(args) -> int`, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "kbmc": ("vmbmc.kbmc.cli", "Run the BMC (IPMI, and Redfish when enabled) for one VM or BMC."),
    "controller": ("vmbmc.controller.cli", "Run the VirtualMachineBMC controller."),
}
PLUGIN_GROUP = "vmbmc.commands"
# The development distribution's commands, named here so that without it they answer with this line.
DEVELOPMENT_COMMANDS = ("demo", "emulator")
ADD_DEVELOPMENT = (
    "come with the development distribution vmbmc-devcluster; "
    "add it with `pip install -e ./devcluster` in a checkout of vmbmc"
)


def commands() -> dict[str, tuple[str, str]]:
    """The product's sub-commands and those installed distributions add (each entry point names a
    (module, help) pair in a module that imports nothing heavy)."""
    found = dict(COMMANDS)
    for ep in entry_points(group=PLUGIN_GROUP):
        if ep.name in found:
            continue  # a plugin never replaces a product command
        try:
            module, help_text = ep.load()
        except Exception:  # a broken or half-removed plugin: as if absent (its name then says how to add it)
            continue
        found[ep.name] = (str(module), str(help_text))
    return found


def build_parser(
    argv: Sequence[str], available: dict[str, tuple[str, str]] | None = None
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each sub-command's (whose usage a mistake in its flags prints)."""
    available = commands() if available is None else available
    missing = [name for name in DEVELOPMENT_COMMANDS if name not in available]
    epilog = f"{' and '.join(missing)}: not installed; they {ADD_DEVELOPMENT}" if missing else None
    parser = argparse.ArgumentParser(
        prog="vmbmc", description="Virtual BMCs for KubeVirt VMs.", epilog=epilog
    )
    parser.add_argument("--version", action="version", version=f"vmbmc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the chosen sub-command's module is imported (its options need it).
    chosen = next((a for a in argv if a in available), None)
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, (module, help_text) in available.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        parsers[name] = sp
        if name == chosen:
            importlib.import_module(module).configure(sp)
    return parser, parsers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    available = commands()
    # The first word naming a command decides (as argparse would), before its flags are parsed.
    chosen = next((a for a in argv if a in available or a in DEVELOPMENT_COMMANDS), None)
    if chosen is not None and chosen not in available:
        print(f"vmbmc {chosen}: not installed: demo and emulator {ADD_DEVELOPMENT}", file=sys.stderr)
        return 2
    parser, parsers = build_parser(argv, available)
    # parse_args would report a sub-command's unknown flag with the top-level usage
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parsers[args.command].error(
            f"unrecognized arguments: {' '.join(unknown)} (see 'vmbmc {args.command} --help')"
        )
    module = importlib.import_module(available[args.command][0])
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
