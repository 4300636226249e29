"""Finding the demo's pod processes as an operator's tools do: by their command line."""

from __future__ import annotations

from pathlib import Path


def kbmc_pid(address: str) -> int | None:
    """The `vmbmc kbmc … --address ADDRESS …` process, or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "kbmc" in argv and "--address" in argv[:-1] and argv[argv.index("--address") + 1] == address:
            return int(entry.name)
    return None
