"""Systems collection and the one ComputerSystem: power state, Boot override PATCH, Reset action.

The System's Id is the VM's name (a Kubernetes name never changes and is what an operator types in
a Metal3 `redfish://host/redfish/v1/Systems/<name>` address); a request naming the VM's UUID gets a
307 to the same path under the name, as sushy-tools does the other way round.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vmbmc.machine.errors import MachineError, NotFound
from vmbmc.machine.types import Inventory, PowerState
from vmbmc.redfish import paths
from vmbmc.redfish.body import is_annotation, read_object
from vmbmc.redfish.boot import boot_resource, parse_boot_patch
from vmbmc.redfish.context import Service, requester, service
from vmbmc.redfish.errors import RedfishError, from_machine_error
from vmbmc.redfish.power import DMTF_RESET_TYPES, REDFISH_POWER_STATES, RESET_TYPES
from vmbmc.redfish.resources.base import collection, ok, ref, resource, status

log = logging.getLogger(__name__)

RESET_ACTION = "#ComputerSystem.Reset"
_GIB = 1 << 30


class Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location

    def response(self) -> Response:
        return RedirectResponse(self.location, status_code=307)


def current_inventory(svc: Service) -> Inventory | None:
    try:
        return svc.machine.inventory()
    except NotFound:
        return None


def resolve(request: Request) -> Inventory:
    """The VM this request's `{system_id}` names; 404 for any other Id, 307 for the VM's UUID."""
    system_id = request.path_params["system_id"]
    inv = current_inventory(service(request))
    if inv is not None and system_id == inv.name:
        return inv
    if inv is not None and system_id == inv.uuid:
        old = f"{paths.SYSTEMS}/{system_id}"
        raise Redirect(paths.system(inv.name) + request.url.path[len(old):])
    raise RedfishError(404, "ResourceNotFound", "ComputerSystem", system_id)


def system_path(inv: Inventory) -> str:
    return paths.system(inv.name)


async def systems(request: Request) -> Response:
    inv = current_inventory(service(request))
    members = [system_path(inv)] if inv else []
    return ok(collection("ComputerSystemCollection", paths.SYSTEMS, "Computer System Collection", members))


def system_body(svc: Service, inv: Inventory) -> dict[str, Any]:
    power = svc.machine.power_status()
    path = system_path(inv)
    health = "Warning" if power.stale else "OK"
    body = resource(
        "ComputerSystem", path, inv.name, inv.name,
        Description=f"KubeVirt VirtualMachine {inv.namespace}/{inv.name}",
        SystemType="Virtual",
        Manufacturer="KubeVirt",
        Model="VirtualMachine",
        UUID=inv.uuid,
        Status=status(health=health),
        Boot=boot_resource(svc.machine.boot_override(), svc.machine.supported_boot_targets()),
        MemorySummary={"TotalSystemMemoryGiB": round(inv.memory_bytes / _GIB, 6)},
        ProcessorSummary={"Count": inv.cpus, "LogicalProcessorCount": inv.cpus},
        Processors=ref(f"{path}/Processors"),
        EthernetInterfaces=ref(f"{path}/EthernetInterfaces"),
        SimpleStorage=ref(f"{path}/SimpleStorage"),
        LogServices=ref(f"{path}/LogServices"),
        Links={"ManagedBy": [ref(paths.MANAGER)], "Chassis": [ref(paths.CHASSIS)]},
        Actions={
            RESET_ACTION: {
                "target": f"{path}/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
            }
        },
    )
    if svc.manager.ipmi_port:
        # The serial console is IPMI Serial over LAN, on the port clients use (a Service's 623).
        body["SerialConsole"] = {
            "MaxConcurrentSessions": 1,
            "IPMI": {
                "ServiceEnabled": True,
                "Port": svc.manager.ipmi_port,
                "HotKeySequenceDisplay": "ipmitool: Enter ~. ; ipmiconsole: &.",
            },
        }
    if svc.machine.virtual_media() is not None:
        body["VirtualMedia"] = ref(f"{path}/VirtualMedia")
    if svc.machine.firmware() is not None:
        body["Bios"] = ref(f"{path}/Bios")
        body["SecureBoot"] = ref(f"{path}/SecureBoot")
    # Redfish has no "Unknown" PowerState: leave the property out rather than invent a state.
    if power.state in REDFISH_POWER_STATES:
        body["PowerState"] = power.state.value
    return body


async def get_system(request: Request) -> Response:
    svc = service(request)
    return ok(system_body(svc, resolve(request)))


async def patch_system(request: Request) -> Response:
    svc = service(request)
    inv = resolve(request)
    body = await read_object(request)
    if not body:
        raise RedfishError(400, "EmptyJSON")
    readable = system_body(svc, inv)
    change = None
    for key, value in body.items():
        if is_annotation(key):
            continue
        if key == "Boot":
            change = parse_boot_patch(value, svc.machine.supported_boot_targets())
        elif key in readable:
            raise RedfishError(400, "PropertyNotWritable", key)
        else:
            raise RedfishError(400, "PropertyUnknown", key)
    if change is None or change.empty():
        return Response(status_code=204)
    try:
        await svc.machine.set_boot_override(
            requester(request), target=change.target, enabled=change.enabled, mode=change.mode
        )
    except MachineError as exc:
        if change.target is not None:
            prop, value = "Boot/BootSourceOverrideTarget", change.target.value
        elif change.mode is not None:
            prop, value = "Boot/BootSourceOverrideMode", change.mode.value
        else:
            prop, value = "Boot/BootSourceOverrideEnabled", change.enabled.value if change.enabled else ""
        raise from_machine_error(
            exc, parameter=prop, value=value, resource=("ComputerSystem", inv.name)
        ) from exc
    return Response(status_code=204)


def parse_reset(body: dict[str, Any]) -> str:
    """The ResetType of a Reset body; 400 for anything we do not offer."""
    for key in body:
        if not is_annotation(key) and key != "ResetType":
            raise RedfishError(400, "ActionParameterUnknown", RESET_ACTION, key)
    if "ResetType" not in body:
        raise RedfishError(400, "ActionParameterMissing", RESET_ACTION, "ResetType")
    value = body["ResetType"]
    if not isinstance(value, str):
        raise RedfishError(400, "ActionParameterValueTypeError", json.dumps(value), "ResetType", RESET_ACTION)
    if value not in DMTF_RESET_TYPES:
        raise RedfishError(400, "ActionParameterValueNotInList", value, "ResetType", RESET_ACTION)
    if value not in RESET_TYPES:
        raise RedfishError(
            400, "ActionParameterNotSupported", "ResetType", RESET_ACTION,
            resolution=f"ResetType {value} is not offered by this BMC; use one of {', '.join(RESET_TYPES)}.",
        )
    return value


async def reset_system(request: Request) -> Response:
    svc = service(request)
    inv = resolve(request)
    reset_type = parse_reset(await read_object(request))
    who = requester(request)
    try:
        result = await svc.machine.act(RESET_TYPES[reset_type], who, settle_timeout=svc.settle_timeout)
    except MachineError as exc:
        powered_off = _is_off(svc)
        log.info("reset not done", extra={"reset_type": reset_type, "error": type(exc).__name__,
                                           "request_id": who.request_id, "user": who.user})
        raise from_machine_error(
            exc, parameter="ResetType", value=reset_type, action=RESET_ACTION,
            resource=("ComputerSystem", inv.name), powered_off=powered_off,
        ) from exc
    log.info("reset", extra={"reset_type": reset_type, "effect": result.effect.value,
                             "request_id": who.request_id, "user": who.user, "client": who.client})
    return Response(status_code=204)


def _is_off(svc: Service) -> bool:
    try:
        return svc.machine.power_status().state == PowerState.OFF
    except MachineError:
        return False
