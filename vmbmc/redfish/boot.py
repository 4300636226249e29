"""The ComputerSystem `Boot` object: what GET shows and what a PATCH may change.

Two client shapes must work:
- sushy's minimal PATCH: `{"Boot": {"BootSourceOverrideTarget": T, "BootSourceOverrideEnabled": E}}`,
  `Enabled` only when it changes, `"HttpBootUri": null` when the resource advertises HttpBootUri
  (we do not advertise it, but accept the null), and the mode as a separate PATCH;
- gofish's whole-object PATCH: every Boot property it read, read-only ones and
  `@Redfish.AllowableValues` annotations included, plus `BootOrder`.
So inside `Boot`: the three override properties are applied; every other property DMTF's Boot type
defines is ignored; annotations are ignored; a name the Boot type does not define is PropertyUnknown.
`HttpBootUri` may be null or "" (gofish's zero value); a real URI would be a request we cannot honour.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vmbmc.machine.types import BootMode, BootOverride, BootPersistence, BootTarget
from vmbmc.redfish.body import is_annotation
from vmbmc.redfish.errors import RedfishError

#: every property of DMTF's `ComputerSystem.Boot` complex type (all versions); a unit test checks
#: this against the CSDL.
BOOT_PROPERTIES = frozenset({
    "AliasBootOrder", "AutomaticRetryAttempts", "AutomaticRetryConfig", "BootNext", "BootOptions",
    "BootOrder", "BootOrderPropertySelection", "BootSourceOverrideEnabled", "BootSourceOverrideMode",
    "BootSourceOverrideTarget", "Certificates", "HttpBootUri", "RemainingAutomaticRetryAttempts",
    "StopBootOnFault", "TrustedModuleRequiredToBoot", "UefiTargetBootSourceOverride",
})

# property paths as error messages name them
_TARGET = "Boot/BootSourceOverrideTarget"
_ENABLED = "Boot/BootSourceOverrideEnabled"
_MODE = "Boot/BootSourceOverrideMode"


@dataclass(frozen=True)
class BootChange:
    target: BootTarget | None = None
    enabled: BootPersistence | None = None
    mode: BootMode | None = None

    def empty(self) -> bool:
        return self.target is None and self.enabled is None and self.mode is None


def boot_resource(override: BootOverride, targets: tuple[BootTarget, ...]) -> dict[str, Any]:
    return {
        "BootSourceOverrideTarget": override.target.value,
        "BootSourceOverrideTarget@Redfish.AllowableValues": [t.value for t in targets],
        "BootSourceOverrideEnabled": override.enabled.value,
        "BootSourceOverrideEnabled@Redfish.AllowableValues": [p.value for p in BootPersistence],
        "BootSourceOverrideMode": override.mode.value,
        "BootSourceOverrideMode@Redfish.AllowableValues": [m.value for m in BootMode],
    }


def _enum_value(
    value: Any, prop: str, enum: type[BootTarget | BootPersistence | BootMode], allowed: tuple[Any, ...]
) -> Any:
    """The enum member `value` names; 400 for a non-string or a value outside `allowed`."""
    if not isinstance(value, str):
        raise RedfishError(400, "PropertyValueTypeError", _render(value), prop)
    try:
        member = enum(value)
    except ValueError:
        raise RedfishError(400, "PropertyValueNotInList", value, prop) from None
    if member not in allowed:
        raise RedfishError(400, "PropertyValueNotInList", value, prop)
    return member


def _render(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def parse_boot_patch(boot: Any, supported_targets: tuple[BootTarget, ...]) -> BootChange:
    """Validate the `Boot` object of a PATCH; raises RedfishError (400) with the first problem."""
    if not isinstance(boot, dict):
        raise RedfishError(400, "PropertyValueTypeError", _render(boot), "Boot")
    for key, value in boot.items():
        if is_annotation(key):
            continue
        if key not in BOOT_PROPERTIES:
            raise RedfishError(400, "PropertyUnknown", f"Boot/{key}")
        if key == "HttpBootUri" and value not in (None, ""):
            raise RedfishError(400, "PropertyNotWritable", "Boot/HttpBootUri",
                               resolution="This BMC does not offer HTTP boot; leave HttpBootUri out or null.")
    target = enabled = mode = None
    if "BootSourceOverrideTarget" in boot:
        target = _enum_value(boot["BootSourceOverrideTarget"], _TARGET, BootTarget, supported_targets)
    if "BootSourceOverrideEnabled" in boot:
        enabled = _enum_value(
            boot["BootSourceOverrideEnabled"], _ENABLED, BootPersistence, tuple(BootPersistence)
        )
    if "BootSourceOverrideMode" in boot:
        mode = _enum_value(boot["BootSourceOverrideMode"], _MODE, BootMode, tuple(BootMode))
    return BootChange(target=target, enabled=enabled, mode=mode)
