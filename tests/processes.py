"""Finding the demo's pod processes as an operator's tools do: by their command line."""

from __future__ import annotations

from pathlib import Path


def command_lines() -> dict[int, list[str]]:
    """Every process's argv, by pid."""
    out: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue  # gone meanwhile
    return out


def kbmc_pid(address: str) -> int | None:
    """The `vmbmc kbmc … --address ADDRESS …` process, or None."""
    for pid, argv in command_lines().items():
        if "kbmc" in argv and "--address" in argv[:-1] and argv[argv.index("--address") + 1] == address:
            return pid
    return None


def pids_running(executable_prefix: str) -> list[int]:
    """Processes whose argv[0] starts with `executable_prefix` (e.g. a venv's directory)."""
    return [pid for pid, argv in command_lines().items() if argv and argv[0].startswith(executable_prefix)]
