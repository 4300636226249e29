"""Registries collection and the Base message registry vmbmc quotes in its error bodies; where firmware
settings are offered, the collection also lists the Bios attribute registry's file (resources/firmware.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.redfish import paths
from vmbmc.redfish.bios import REGISTRY_ID as BIOS_REGISTRY_ID
from vmbmc.redfish.context import service
from vmbmc.redfish.errors import RedfishError, RedfishJSON
from vmbmc.redfish.registry import REGISTRY_ID, base_registry
from vmbmc.redfish.resources.base import collection, described_by, ok, resource

_FILE = f"{paths.REGISTRIES}/Base"
_REGISTRY_URI = f"{_FILE}/{REGISTRY_ID}"


async def registries(request: Request) -> Response:
    files = [_FILE]
    if service(request).machine.firmware() is not None:
        files.append(f"{paths.REGISTRIES}/{BIOS_REGISTRY_ID}")  # the Bios attribute registry's file
    body = collection("MessageRegistryFileCollection", paths.REGISTRIES, "Registry File Collection", files)
    return ok(body)


async def base_file(request: Request) -> Response:
    major_minor = REGISTRY_ID.rsplit(".", 1)[0]  # "Base.1.16"
    body = resource(
        "MessageRegistryFile", _FILE, "Base", "Base Message Registry File",
        Description="DMTF Base message registry (the messages this service uses)",
        Languages=["en"],
        Registry=major_minor,
        Location=[{"Language": "en", "Uri": _REGISTRY_URI}],
    )
    return ok(body)


async def base_registry_document(request: Request) -> Response:
    if request.path_params["registry"] != REGISTRY_ID:
        raise RedfishError(404, "ResourceNotFound", "MessageRegistry", request.path_params["registry"])
    return RedfishJSON(base_registry(), headers={"Link": described_by(base_registry()["@odata.type"])})
