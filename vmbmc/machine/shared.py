"""What the shared kbmc (vmbmc.kbmc.shared) needs from a back end: Machines by BMC, and the namespace's
roster of BMCs to serve. Like `Machine`, an interface: the front end never knows it is KubeVirt
(vmbmc.kubevirt.hub.KubeVirtHub and vmbmc.kubevirt.shared_roster.SharedRoster implement it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from vmbmc.machine.api import Machine
from vmbmc.roster import RosterEntry


class Roster(Protocol):
    """The BMCs a shared kbmc serves in one namespace, their credentials and their `serving` mark."""

    def start(self, on_change: Callable[[], None]) -> None: ...

    async def stop(self) -> None: ...

    def synced(self) -> bool: ...

    def entries(self) -> dict[str, RosterEntry]: ...

    async def credentials(self, secret: str) -> tuple[str, str]: ...

    async def mark_serving(self, name: str, serving: bool) -> None: ...


class MachineSource(Protocol):
    """Machines for BMCs by name, and the roster of a namespace."""

    def shared_roster(self, namespace: str) -> Roster: ...

    async def machine_for_bmc(self, namespace: str, name: str, *, restricted: bool = False) -> Machine: ...

    async def release(self, machine: Machine) -> None: ...
