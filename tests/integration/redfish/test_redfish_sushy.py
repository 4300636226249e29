"""The sushy library doing what Ironic's redfish driver does, against the real server.

sushy is synchronous (requests), so each flow runs in a thread while the loop serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections.abc import Callable, Iterator

import sushy
import urllib3
from redfish_servers import PASSWORD, USER
from sushy import BootSource, BootSourceOverrideEnabled, BootSourceOverrideMode, PowerState, ResetType

from vmbmc.machine.types import BootMode, BootPersistence, BootTarget
from vmbmc.machine.types import PowerState as VMState

SYSTEM = "/redfish/v1/Systems/vm1"


@contextlib.contextmanager
def connect(url: str, auth: str = "auto") -> Iterator[sushy.Sushy]:
    """A sushy connection as Ironic makes one (`redfish_auth_type=auto`: session, else Basic).

    The session is closed (DELETE) before the test's server stops: sushy would otherwise try to
    close it from `__del__`, whenever garbage collection runs, retrying for 30 s.
    """
    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    authenticator = {
        "auto": sushy.auth.SessionOrBasicAuth,
        "session": sushy.auth.SessionAuth,
        "basic": sushy.auth.BasicAuth,
    }[auth](USER, PASSWORD)
    try:
        yield sushy.Sushy(url + "/redfish/v1", verify=False, auth=authenticator)
    finally:
        authenticator.close()


def wait_power(system, state: PowerState, timeout: float = 30.0) -> None:
    """Ironic's _wait_for_power_state: refresh and poll until the state is reached."""
    deadline = time.monotonic() + timeout
    while True:
        system.refresh()
        if system.power_state == state:
            return
        assert time.monotonic() < deadline, f"power state {system.power_state}, wanted {state}"
        time.sleep(0.05)


def ironic_power_flows(url: str, after_first: Callable[[], None]) -> list[str]:
    with connect(url) as conn:
        return _power_flows(conn, after_first)


def _power_flows(conn: sushy.Sushy, after_first: Callable[[], None]) -> list[str]:
    system = conn.get_system(SYSTEM)
    seen = []
    assert system.power_state == PowerState.OFF
    assert ResetType.ON in system.get_allowed_reset_system_values()
    # power on: sushy reads the transition while it lasts
    system.reset_system(ResetType.ON)
    system.refresh()
    seen.append(system.power_state.value)
    wait_power(system, PowerState.ON)
    after_first()
    # reboot = ForceOff, poll Off, On, poll On
    system.reset_system(ResetType.FORCE_OFF)
    wait_power(system, PowerState.OFF)
    system.reset_system(ResetType.ON)
    wait_power(system, PowerState.ON)
    # soft reboot and soft power off
    system.reset_system(ResetType.GRACEFUL_RESTART)
    wait_power(system, PowerState.ON)
    system.reset_system(ResetType.GRACEFUL_SHUTDOWN)
    wait_power(system, PowerState.OFF)
    return seen


async def test_ironic_power_flows(server, machine) -> None:
    # The first transition lasts long enough for a loaded machine to read it; the rest are quick.
    machine.transition_delay = 5.0

    def quick() -> None:
        machine.transition_delay = 0.3

    seen = await asyncio.to_thread(ironic_power_flows, server.url, quick)
    assert seen == ["PoweringOn"]
    assert machine.power_status().state is VMState.OFF
    assert [a.value for a, _ in machine.calls] == ["on", "off", "on", "graceful_restart", "shutdown"]
    assert {who.user for _, who in machine.calls} == {USER}


def ironic_boot_flows(url: str) -> None:
    with connect(url) as conn:
        _boot_flows(conn)


def _boot_flows(conn: sushy.Sushy) -> None:
    system = conn.get_system(SYSTEM)
    # deploy: PXE once
    system.set_system_boot_options(BootSource.PXE, enabled=BootSourceOverrideEnabled.ONCE)
    system.refresh()
    assert system.boot.target == BootSource.PXE
    assert system.boot.enabled == BootSourceOverrideEnabled.ONCE
    # persistent disk boot
    system.set_system_boot_options(BootSource.HDD, enabled=BootSourceOverrideEnabled.CONTINUOUS)
    system.refresh()
    assert system.boot.target == BootSource.HDD
    assert system.boot.enabled == BootSourceOverrideEnabled.CONTINUOUS
    # UEFI as its own PATCH, then Ironic re-reads it
    system.set_system_boot_options(mode=BootSourceOverrideMode.UEFI)
    system.refresh()
    assert system.boot.mode == BootSourceOverrideMode.UEFI
    # a target the VM cannot honour is refused by sushy from AllowableValues
    try:
        system.set_system_boot_options(BootSource.USB)
    except sushy.exceptions.InvalidParameterValueError:
        pass
    else:
        raise AssertionError("Usb accepted")


async def test_ironic_boot_flows(server, machine) -> None:
    await asyncio.to_thread(ironic_boot_flows, server.url)
    assert machine.boot_override().target is BootTarget.HDD
    assert machine.boot_override().enabled is BootPersistence.CONTINUOUS
    assert machine.boot_override().mode is BootMode.UEFI


def ironic_inspection(url: str) -> dict:
    with connect(url) as conn:
        return _inspection(conn)


def _inspection(conn: sushy.Sushy) -> dict:
    system = conn.get_system(SYSTEM)
    facts = {
        "memory_gib": system.memory_summary.size_gib,
        "cpus": system.processors.summary.count,
        "macs": sorted(system.ethernet_interfaces.summary),
        "disks": system.simple_storage.disks_sizes_bytes,
        "boot_mode": system.boot.mode,
        "managers": [m.identity for m in system.managers],
        "chassis": [c.identity for c in system.chassis],
        "uuid": system.uuid,
    }
    manager = conn.get_manager("/redfish/v1/Managers/BMC")
    facts["manager_type"] = manager.manager_type
    return facts


async def test_ironic_inspection(server) -> None:
    facts = await asyncio.to_thread(ironic_inspection, server.url)
    assert facts["memory_gib"] == 4
    assert facts["cpus"] == 2
    assert facts["macs"] == ["52:54:00:12:34:56", "52:54:00:ab:cd:ef"]
    assert facts["disks"] == [20 << 30]
    assert facts["boot_mode"] == BootSourceOverrideMode.LEGACY
    assert facts["managers"] == ["BMC"] and facts["chassis"] == ["1"]
    assert facts["uuid"] == "5f4c6c5e-1a1b-4c2d-9e8f-0123456789ab"
    assert facts["manager_type"] == sushy.ManagerType.BMC


def session_lifecycle(url: str) -> tuple[int, int]:
    with connect(url, auth="session") as conn:
        conn.get_system(SYSTEM).refresh()
        open_count = len(conn.get_session_service().sessions.get_members())
    # leaving the block closed the session (DELETE), as sushy does when Ironic drops a connection
    with connect(url, auth="basic") as basic:
        after = len(basic.get_session_service().sessions.get_members())
    return open_count, after


async def test_sessions_with_sushy(https_server) -> None:
    open_count, after = await asyncio.to_thread(session_lifecycle, https_server.url)
    assert (open_count, after) == (1, 0)
