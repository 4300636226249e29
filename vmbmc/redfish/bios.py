"""The Bios attributes vmbmc offers and their attribute registry: only knobs KubeVirt has.

| attribute    | values                | the VM's template                                                  |
|--------------|-----------------------|--------------------------------------------------------------------|
| `BootMode`   | `Uefi`, `Bios`        | `firmware.bootloader` `efi` / `bios` (none counts as `Bios`)       |
| `SecureBoot` | `Enabled`, `Disabled` | `firmware.bootloader.efi.secureBoot`, with `features.smm.enabled`  |

Changes go to the settings object (`Bios/Settings`, the VM's spec) and take effect at the next reset
(`OnReset`: KubeVirt gives the template to the next VMI it creates). The registry is what sushy's
`get_attribute_registry()` finds: a MessageRegistryFile whose Id is the Bios `AttributeRegistry` value,
pointing at this document.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from vmbmc.machine.firmware import FirmwareChange, FirmwareSettings
from vmbmc.machine.types import BootMode
from vmbmc.redfish.body import is_annotation
from vmbmc.redfish.errors import RedfishError
from vmbmc.redfish.schemas import odata_type

REGISTRY_PREFIX = "KubeVirtBiosAttributeRegistry"
REGISTRY_VERSION = "1.0.0"
REGISTRY_ID = f"{REGISTRY_PREFIX}.{REGISTRY_VERSION}"
REGISTRY_NAME = f"{REGISTRY_PREFIX}.1.0"  # MessageRegistryFile.Registry: the name and major.minor version
APPLY_TIMES = ("OnReset",)
APPLY_TIME_PROPERTY = "@Redfish.SettingsApplyTime"

BOOT_MODE, SECURE_BOOT = "BootMode", "SecureBoot"
_BOOT_MODES = {"Uefi": BootMode.UEFI, "Bios": BootMode.LEGACY}
_SECURE_BOOT = {"Enabled": True, "Disabled": False}
#: the machine's setting names (vmbmc.machine.firmware.FirmwareConflict) as attribute paths
ATTRIBUTE_OF = {"boot_mode": f"Attributes/{BOOT_MODE}", "secure_boot": f"Attributes/{SECURE_BOOT}"}


def attributes(settings: FirmwareSettings) -> dict[str, str]:
    mode = next(name for name, m in _BOOT_MODES.items() if m is settings.boot_mode)
    return {BOOT_MODE: mode, SECURE_BOOT: "Enabled" if settings.secure_boot else "Disabled"}


def pending_attributes(pending: FirmwareSettings, current: FirmwareSettings) -> dict[str, str]:
    """What the settings object shows: the attributes the VM's spec changes for the next boot (those
    that differ from what runs), as sushy's `pending_attributes` means them. Empty once applied: Ironic's
    verification reads a pending attribute it asked for as not applied yet."""
    now = attributes(current)
    return {name: value for name, value in attributes(pending).items() if now[name] != value}


def _value(attributes: dict[str, Any], name: str, values: dict[str, Any]) -> Any:
    if name not in attributes:
        return None
    value = attributes[name]
    if not isinstance(value, str):
        raise RedfishError(400, "PropertyValueTypeError", json.dumps(value), f"Attributes/{name}")
    if value not in values:
        raise RedfishError(400, "PropertyValueNotInList", value, f"Attributes/{name}")
    return values[value]


def _apply_time(value: Any) -> None:
    """`@Redfish.SettingsApplyTime` (sushy sends it with `apply_time`): only `OnReset` is offered."""
    if not isinstance(value, dict):
        raise RedfishError(400, "PropertyValueTypeError", json.dumps(value), APPLY_TIME_PROPERTY)
    for key, item in value.items():
        if is_annotation(key):
            continue
        if key != "ApplyTime":  # a maintenance window has no meaning for OnReset
            raise RedfishError(400, "PropertyNotWritable", f"{APPLY_TIME_PROPERTY}/{key}",
                               resolution="Settings are applied at the next reset (OnReset) only.")
        if item not in APPLY_TIMES:
            raise RedfishError(400, "PropertyValueNotInList", str(item), f"{APPLY_TIME_PROPERTY}/ApplyTime",
                               resolution="Use OnReset: the VM's spec changes now, its next boot uses it.")


def parse_settings_patch(body: dict[str, Any], readable: dict[str, Any]) -> FirmwareChange:
    """The change a PATCH of the settings object asks for; 400 with the first problem. `readable`: the
    object as GET shows it (its other properties are read-only)."""
    change = FirmwareChange()
    for key, value in body.items():
        if key == APPLY_TIME_PROPERTY:
            _apply_time(value)
        elif is_annotation(key):
            continue
        elif key == "Attributes":
            if not isinstance(value, dict):
                raise RedfishError(400, "PropertyValueTypeError", json.dumps(value), "Attributes")
            for name in value:
                if name not in (BOOT_MODE, SECURE_BOOT):
                    raise RedfishError(400, "PropertyUnknown", f"Attributes/{name}")
            change = FirmwareChange(
                _value(value, BOOT_MODE, _BOOT_MODES), _value(value, SECURE_BOOT, _SECURE_BOOT)
            )
        elif key in readable:
            raise RedfishError(400, "PropertyNotWritable", key)
        else:
            raise RedfishError(400, "PropertyUnknown", key)
    return change


def _enumeration(name: str, display: str, values: tuple[tuple[str, str], ...], default: str, order: int,
                 help_text: str) -> dict[str, Any]:
    return {
        "AttributeName": name,
        "DisplayName": display,
        "HelpText": help_text,
        "Type": "Enumeration",
        "Value": [{"ValueName": v, "ValueDisplayName": d} for v, d in values],
        "DefaultValue": default,
        "DisplayOrder": order,
        "MenuPath": "./",
        "ReadOnly": False,
        "ResetRequired": True,
    }


@functools.cache
def registry_document() -> dict[str, Any]:
    """The attribute registry (DMTF AttributeRegistry schema), in English."""
    return {
        "@odata.type": odata_type("AttributeRegistry"),
        "Id": REGISTRY_ID,
        "Name": "KubeVirt VirtualMachine BIOS Attribute Registry",
        "Description": "The firmware settings of a KubeVirt VirtualMachine that its vmbmc BMC can change.",
        "Language": "en",
        "OwningEntity": "vmbmc",
        "RegistryVersion": REGISTRY_VERSION,
        "SupportedSystems": [{"ProductName": "KubeVirt VirtualMachine", "SystemId": "KubeVirt"}],
        "RegistryEntries": {
            "Attributes": [
                _enumeration(
                    BOOT_MODE, "Boot Mode", (("Uefi", "UEFI"), ("Bios", "BIOS (Legacy)")), "Bios", 1,
                    "UEFI or BIOS firmware: the VM's firmware.bootloader (efi or bios; none is BIOS). "
                    "Applied when the VM's instance is recreated (a reset).",
                ),
                _enumeration(
                    SECURE_BOOT, "Secure Boot", (("Enabled", "Enabled"), ("Disabled", "Disabled")),
                    "Disabled", 2,
                    "UEFI Secure Boot: firmware.bootloader.efi.secureBoot, with the smm feature enabled; "
                    "needs BootMode Uefi. Applied when the VM's instance is recreated (a reset).",
                ),
            ]
        },
    }
