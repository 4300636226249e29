"""Chassis collection and Chassis `1`: the VM's "box", powered as the System is."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.machine.errors import NotFound
from vmbmc.redfish import paths
from vmbmc.redfish.context import service
from vmbmc.redfish.power import REDFISH_POWER_STATES
from vmbmc.redfish.resources.base import collection, ok, ref, resource, status
from vmbmc.redfish.resources.systems import current_inventory, system_path


async def chassis_collection(request: Request) -> Response:
    body = collection("ChassisCollection", paths.CHASSIS_COLLECTION, "Chassis Collection", [paths.CHASSIS])
    return ok(body)


async def chassis(request: Request) -> Response:
    svc = service(request)
    inv = current_inventory(svc)
    body = resource(
        "Chassis", paths.CHASSIS, paths.CHASSIS_ID, f"Chassis of {svc.machine.vm}",
        ChassisType="Other",
        Description="The virtual enclosure of a KubeVirt VirtualMachine",
        Manufacturer="KubeVirt",
        Model="VirtualMachine",
        Status=status(),
        Links={
            "ComputerSystems": [ref(system_path(inv))] if inv else [],
            "ManagedBy": [ref(paths.MANAGER)],
        },
    )
    try:
        state = svc.machine.power_status().state
    except NotFound:
        state = None
    if state in REDFISH_POWER_STATES:
        body["PowerState"] = state.value
    return ok(body)
