"""DMTF's own client: python-redfish-library (session login) + Tacklebox redfish_utilities."""

from __future__ import annotations

import asyncio
import warnings

import redfish
import redfish_utilities
import urllib3
from redfish_servers import PASSWORD, USER

from vmbmc.machine.types import BootTarget, PowerAction


def tacklebox_flow(url: str) -> dict:
    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    context = redfish.redfish_client(base_url=url, username=USER, password=PASSWORD, timeout=10, max_retry=1)
    context.login(auth="session")
    try:
        result = redfish_utilities.system_reset(context, reset_type="On")
        redfish_utilities.set_system_boot(context, ov_target="Pxe", ov_enabled="Once")
        boot = redfish_utilities.get_system_boot(context)
        inventory = redfish_utilities.get_system_inventory(context)
        return {"reset_status": result.status, "boot": boot, "inventory": inventory}
    finally:
        context.logout()


async def test_tacklebox_power_boot_inventory(https_server, machine) -> None:
    got = await asyncio.to_thread(tacklebox_flow, https_server.url)
    assert got["reset_status"] == 204
    assert got["boot"]["BootSourceOverrideTarget"] == "Pxe"
    assert machine.boot_override().target is BootTarget.PXE
    assert [a for a, _ in machine.calls] == [PowerAction.ON]
    assert got["inventory"], "inventory walked the chassis"
