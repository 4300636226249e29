"""The serial console of a machine, as front ends (IPMI SOL) see it.

A front end opens the console with two callbacks: `output` receives the guest's bytes as they come,
`state` hears when the console connects, waits for a running VM, or is refused. The back end keeps
the console through power cycles: when the VM instance is replaced it connects to the new one, so
whoever watches sees the next boot. Everything runs on the machine's loop; nothing blocks.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable


class ConsoleState(enum.Enum):
    CONNECTED = "connected"  # bytes flow both ways
    WAITING = "waiting"  # the VM is not running: connects when it runs
    REFUSED = "refused"  # the back end may not open it (rights, no serial console); retried later


Output = Callable[[bytes], None]
StateListener = Callable[[ConsoleState, str], None]


class Console(abc.ABC):
    @abc.abstractmethod
    def write(self, data: bytes) -> bool:
        """Queue bytes for the guest; never blocks. False if they were dropped (not connected, or
        the queue is full)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop: disconnect and call no callback any more."""
