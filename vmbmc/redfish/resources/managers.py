"""Managers collection, Manager `BMC` and its NetworkProtocol.

`#Manager.Reset` (GracefulRestart, ForceRestart) restarts what this BMC holds of its own: it
closes every Redfish session, as a real BMC reboot would. It never touches the VM.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.redfish import paths
from vmbmc.redfish.body import is_annotation, read_object
from vmbmc.redfish.context import requester, service
from vmbmc.redfish.errors import RedfishError
from vmbmc.redfish.resources.base import collection, ok, ref, resource, status
from vmbmc.redfish.resources.systems import current_inventory, system_path

log = logging.getLogger(__name__)

RESET_ACTION = "#Manager.Reset"
RESET_TYPES = ("GracefulRestart", "ForceRestart")


async def managers(request: Request) -> Response:
    return ok(collection("ManagerCollection", paths.MANAGERS, "Manager Collection", [paths.MANAGER]))


async def manager(request: Request) -> Response:
    svc = service(request)
    inv = current_inventory(svc)
    servers = [ref(system_path(inv))] if inv else []
    body = resource(
        "Manager", paths.MANAGER, "BMC", "vmbmc BMC",
        Description=f"Virtual BMC of KubeVirt VirtualMachine {svc.machine.vm}",
        ManagerType="BMC",
        Manufacturer="vmbmc",
        Model="vmbmc",
        FirmwareVersion=svc.manager.version,
        PowerState="On",
        Status=status(),
        NetworkProtocol=ref(paths.NETWORK_PROTOCOL),
        Links={"ManagerForServers": servers, "ManagerForChassis": [ref(paths.CHASSIS)]},
        Actions={
            RESET_ACTION: {
                "target": f"{paths.MANAGER}/Actions/Manager.Reset",
                "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
            }
        },
    )
    if inv is not None:
        body["UUID"] = svc.derived_uuid("manager")
    if svc.machine.virtual_media() is not None:
        body["VirtualMedia"] = ref(f"{paths.MANAGER}/VirtualMedia")
    return ok(body)


async def reset_manager(request: Request) -> Response:
    svc = service(request)
    body = await read_object(request, allow_empty=True)
    for key in body:
        if not is_annotation(key) and key != "ResetType":
            raise RedfishError(400, "ActionParameterUnknown", RESET_ACTION, key)
    reset_type = body.get("ResetType", "GracefulRestart")
    if not isinstance(reset_type, str):
        raise RedfishError(400, "ActionParameterValueTypeError", repr(reset_type), "ResetType", RESET_ACTION)
    if reset_type not in RESET_TYPES:
        raise RedfishError(400, "ActionParameterValueNotInList", reset_type, "ResetType", RESET_ACTION)
    closed = svc.sessions.clear()
    who = requester(request)
    log.info("manager reset: closed all sessions",
             extra={"reset_type": reset_type, "sessions": closed, "user": who.user, "client": who.client})
    return Response(status_code=204)


async def network_protocol(request: Request) -> Response:
    svc = service(request)
    info = svc.manager
    port = info.redfish_port or (request.url.port or (443 if info.https else 80))
    web_on, web_off = ("HTTPS", "HTTP") if info.https else ("HTTP", "HTTPS")
    body = resource(
        "ManagerNetworkProtocol", paths.NETWORK_PROTOCOL, "NetworkProtocol", "BMC Network Protocols",
        Description="The protocols this virtual BMC answers on",
        Status=status(),
        **{web_on: {"ProtocolEnabled": True, "Port": port}, web_off: {"ProtocolEnabled": False}},
        IPMI={"ProtocolEnabled": True, "Port": info.ipmi_port}
        if info.ipmi_port
        else {"ProtocolEnabled": False},
    )
    return ok(body)
