"""SecureBoot, Bios and its settings object, and the Bios attribute registry: the VM's firmware settings
(vmbmc.machine.firmware). Advertised only where the back end has them.

Pending settings are the VM's spec (`SecureBootEnable`, `Bios/Settings`); current ones are the running
VMI's (`SecureBootCurrentBoot`, null while no VMI runs; the Bios `Attributes`, which show the VM's spec
while it is off, since its next start boots with that). A PATCH changes the VM's spec, reads back at once,
and takes effect at the next reset (`OnReset`): KubeVirt copies the template into the VMI it creates then.
`ResetKeys` and the key databases are not offered: KubeVirt has no key store.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.machine.errors import MachineError
from vmbmc.machine.firmware import FirmwareChange, FirmwareConflict, FirmwareStatus
from vmbmc.redfish import bios, paths
from vmbmc.redfish.body import is_annotation, read_object
from vmbmc.redfish.context import requester, service
from vmbmc.redfish.errors import RedfishError, RedfishJSON, from_machine_error
from vmbmc.redfish.resources.base import described_by, ok, ref, resource
from vmbmc.redfish.resources.systems import resolve, system_path
from vmbmc.redfish.schemas import odata_type

REGISTRY_FILE = f"{paths.REGISTRIES}/{bios.REGISTRY_ID}"
REGISTRY_URI = f"{REGISTRY_FILE}/{bios.REGISTRY_ID}"
SECURE_BOOT_ENABLE = "SecureBootEnable"
#: the machine's setting names as the SecureBoot resource's PATCH names them
_SECURE_BOOT_PROPERTY = {"secure_boot": SECURE_BOOT_ENABLE, "boot_mode": "Boot/BootSourceOverrideMode"}


def offered(request: Request) -> bool:
    return service(request).machine.firmware() is not None


def _state(request: Request) -> tuple[str, FirmwareStatus]:
    """The System's path and its firmware settings; 404 where the back end has none."""
    path = system_path(resolve(request))
    state = service(request).machine.firmware()
    if state is None:
        raise RedfishError(404, "ResourceMissingAtURI", request.url.path)
    return path, state


async def _patch_body(request: Request) -> tuple[str, FirmwareStatus, dict[str, Any]]:
    path, state = _state(request)
    body = await read_object(request)
    if not body:
        raise RedfishError(400, "EmptyJSON")
    return path, state, body


async def _change(request: Request, change: FirmwareChange, names: dict[str, str], value: str) -> Response:
    """Apply `change` (204), mapping a conflict to PropertyValueConflict with the request's names."""
    if change.empty():
        return Response(status_code=204)
    inv = resolve(request)
    try:
        await service(request).machine.set_firmware(requester(request), change)
    except FirmwareConflict as exc:
        raise RedfishError(400, "PropertyValueConflict", names[exc.setting], names[exc.other],
                           resolution=exc.message) from exc
    except MachineError as exc:
        parameter = names["secure_boot" if change.secure_boot is not None else "boot_mode"]
        raise from_machine_error(exc, parameter=parameter, value=value,
                                 resource=("ComputerSystem", inv.name)) from exc
    return Response(status_code=204)


# --- SecureBoot --------------------------------------------------------------------------------------


def secure_boot_body(path: str, state: FirmwareStatus) -> dict[str, Any]:
    current = None
    if state.current is not None:
        current = "Enabled" if state.current.secure_boot else "Disabled"
    return resource(
        "SecureBoot", f"{path}/SecureBoot", "SecureBoot", "UEFI Secure Boot",
        Description="KubeVirt EFI Secure Boot (firmware.bootloader.efi.secureBoot with the smm feature); "
                    "SecureBootEnable is the VM's spec, taken at the next reset",
        SecureBootEnable=state.pending.secure_boot,
        SecureBootCurrentBoot=current,
    )


async def get_secure_boot(request: Request) -> Response:
    return ok(secure_boot_body(*_state(request)))


async def patch_secure_boot(request: Request) -> Response:
    path, state, body = await _patch_body(request)
    readable = secure_boot_body(path, state)
    enable = None
    for key, value in body.items():
        if is_annotation(key):
            continue
        if key == SECURE_BOOT_ENABLE:
            if not isinstance(value, bool):
                raise RedfishError(400, "PropertyValueTypeError", json.dumps(value), key)
            enable = value
        elif key in readable:
            raise RedfishError(400, "PropertyNotWritable", key)
        else:
            raise RedfishError(400, "PropertyUnknown", key)
    change = FirmwareChange(secure_boot=enable)
    return await _change(request, change, _SECURE_BOOT_PROPERTY, json.dumps(enable))


# --- Bios and its settings object ------------------------------------------------------------------------


def bios_body(path: str, state: FirmwareStatus) -> dict[str, Any]:
    settings = {
        "@odata.type": odata_type("Settings"),
        "SettingsObject": ref(f"{path}/Bios/Settings"),
        "SupportedApplyTimes": list(bios.APPLY_TIMES),
    }
    return resource(
        "Bios", f"{path}/Bios", "Bios", "BIOS Configuration Current Settings",
        Description="The firmware settings of the running VirtualMachineInstance (of the VM's spec while "
                    "none runs); change them through the settings object",
        AttributeRegistry=bios.REGISTRY_ID,
        Attributes=bios.attributes(state.current or state.pending),
        **{"@Redfish.Settings": settings},
    )


def settings_body(path: str, state: FirmwareStatus) -> dict[str, Any]:
    apply_time = {
        "@odata.type": odata_type("Settings", "PreferredApplyTime"),
        "ApplyTime": bios.APPLY_TIMES[0],
        "ApplyTime@Redfish.AllowableValues": list(bios.APPLY_TIMES),
    }
    return resource(
        "Bios", f"{path}/Bios/Settings", "Settings", "BIOS Configuration Pending Settings",
        Description="What the VirtualMachine's spec changes: its next instance (after a reset) boots with "
                    "these",
        AttributeRegistry=bios.REGISTRY_ID,
        Attributes=bios.pending_attributes(state.pending, state.current or state.pending),
        **{bios.APPLY_TIME_PROPERTY: apply_time},
    )


async def get_bios(request: Request) -> Response:
    return ok(bios_body(*_state(request)))


async def get_bios_settings(request: Request) -> Response:
    return ok(settings_body(*_state(request)))


async def patch_bios_settings(request: Request) -> Response:
    path, state, body = await _patch_body(request)
    change = bios.parse_settings_patch(body, settings_body(path, state))
    return await _change(request, change, bios.ATTRIBUTE_OF, json.dumps(body.get("Attributes")))


# --- the attribute registry ------------------------------------------------------------------------------


def registry_file() -> dict[str, Any]:
    return resource(
        "MessageRegistryFile", REGISTRY_FILE, bios.REGISTRY_ID, "BIOS Attribute Registry File",
        Description="The attribute registry of the Bios resource (the VM's firmware settings)",
        Languages=["en"],
        Registry=bios.REGISTRY_NAME,
        Location=[{"Language": "en", "Uri": REGISTRY_URI}],
    )


async def get_registry_file(request: Request) -> Response:
    if not offered(request):
        raise RedfishError(404, "ResourceMissingAtURI", request.url.path)
    return ok(registry_file())


async def get_registry(request: Request) -> Response:
    if not offered(request):
        raise RedfishError(404, "ResourceMissingAtURI", request.url.path)
    document = bios.registry_document()
    return RedfishJSON(document, headers={"Link": described_by(document["@odata.type"])})
