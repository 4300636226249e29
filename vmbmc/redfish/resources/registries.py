"""Registries collection: one MessageRegistryFile per registry vmbmc quotes (vmbmc.redfish.registry), and
the Bios attribute registry's where firmware settings are offered (resources/firmware.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.redfish import paths
from vmbmc.redfish.bios import REGISTRY_ID as BIOS_REGISTRY_ID
from vmbmc.redfish.context import service
from vmbmc.redfish.errors import RedfishError, RedfishJSON
from vmbmc.redfish.registry import REGISTRIES, registry
from vmbmc.redfish.resources.base import collection, described_by, ok, resource

_DESCRIPTIONS = {
    "Base": "DMTF Base message registry (the messages this service uses)",
    "ResourceEvent": "DMTF Resource Event message registry (the log entries' power messages)",
    "LogService": "DMTF Log Service message registry (the log clear)",
    "Vmbmc": "vmbmc's own messages (log entries DMTF's registries have no message for)",
}


def _file(prefix: str) -> str:
    return f"{paths.REGISTRIES}/{prefix}"


def _prefix(request: Request) -> str:
    prefix = request.path_params["prefix"]
    if prefix not in REGISTRIES:
        raise RedfishError(404, "ResourceNotFound", "MessageRegistryFile", prefix)
    return str(prefix)


async def registries(request: Request) -> Response:
    members = [_file(prefix) for prefix in REGISTRIES]
    if service(request).machine.firmware() is not None:
        members.append(_file(BIOS_REGISTRY_ID))  # the Bios attribute registry's file
    body = collection("MessageRegistryFileCollection", paths.REGISTRIES, "Registry File Collection", members)
    return ok(body)


async def registry_file(request: Request) -> Response:
    prefix = _prefix(request)
    registry_id = REGISTRIES[prefix]
    body = resource(
        "MessageRegistryFile", _file(prefix), prefix, f"{registry(prefix)['Name']} File",
        Description=_DESCRIPTIONS[prefix],
        Languages=["en"],
        Registry=registry_id.rsplit(".", 1)[0],  # "Base.1.16"
        Location=[{"Language": "en", "Uri": f"{_file(prefix)}/{registry_id}"}],
    )
    return ok(body)


async def registry_document(request: Request) -> Response:
    prefix = _prefix(request)
    if request.path_params["registry"] != REGISTRIES[prefix]:
        raise RedfishError(404, "ResourceNotFound", "MessageRegistry", request.path_params["registry"])
    document = registry(prefix)
    return RedfishJSON(document, headers={"Link": described_by(document["@odata.type"])})
