"""Firmware settings as KubeVirt carries them: the boot mode and UEFI Secure Boot. Pure: no I/O, no clock.

Two knobs of the VM's template, and nothing stored beside them:

- boot mode: `firmware.bootloader` — `efi` is UEFI; `bios`, or no bootloader at all, is BIOS (Legacy);
- Secure Boot: `firmware.bootloader.efi.secureBoot` (KubeVirt reads an unset value as true), which KubeVirt's
  admission webhook accepts only with the `smm` feature on; enabling it therefore also writes
  `features.smm.enabled: true`. A BIOS boot has no Secure Boot.

Pending settings are the VM's spec (what the next boot gets); current ones are the running VMI's spec
(KubeVirt copies the template into a new VMI, so a change takes effect when the VMI is recreated).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from vmbmc.machine.boot import StoredOverride
from vmbmc.machine.errors import Invalid
from vmbmc.machine.observe import vmi_alive
from vmbmc.machine.types import BootMode

FIRMWARE_PATH = "/spec/template/spec/domain/firmware"
FEATURES_PATH = "/spec/template/spec/domain/features"

Patch = list[dict[str, Any]]


class FirmwareConflict(Invalid):
    """Settings KubeVirt cannot boot (Secure Boot with a BIOS boot). `setting` names the one the request
    changed that conflicts with `other` (both `boot_mode` or `secure_boot`)."""

    def __init__(self, message: str, setting: str, other: str) -> None:
        super().__init__(message)
        self.setting, self.other = setting, other


@dataclass(frozen=True, slots=True)
class FirmwareSettings:
    boot_mode: BootMode = BootMode.LEGACY
    secure_boot: bool = False


@dataclass(frozen=True, slots=True)
class FirmwareStatus:
    """What a BMC shows of the firmware: `pending` from the VM's spec, `current` from the running VMI
    (None while no VMI runs)."""

    pending: FirmwareSettings
    current: FirmwareSettings | None


@dataclass(frozen=True, slots=True)
class FirmwareChange:
    """A request: None keeps that setting as the VM's spec has it."""

    boot_mode: BootMode | None = None
    secure_boot: bool | None = None

    def empty(self) -> bool:
        return self.boot_mode is None and self.secure_boot is None

    def text(self) -> str:
        parts = []
        if self.boot_mode is not None:
            parts.append(f"boot mode {self.boot_mode.value}")
        if self.secure_boot is not None:
            parts.append(f"Secure Boot {'on' if self.secure_boot else 'off'}")
        return ", ".join(parts)


# --- reading ----------------------------------------------------------------------------------------


def _domain(spec: dict[str, Any] | None) -> dict[str, Any]:
    return (spec or {}).get("domain") or {}


def _template_spec(vm: dict[str, Any]) -> dict[str, Any]:
    return (((vm.get("spec") or {}).get("template") or {}).get("spec")) or {}


def of_bootloader(bootloader: dict[str, Any] | None) -> FirmwareSettings:
    efi = (bootloader or {}).get("efi")
    if bootloader is None or "efi" not in bootloader:
        return FirmwareSettings()
    return FirmwareSettings(BootMode.UEFI, (efi or {}).get("secureBoot", True) is not False)


def of_domain(domain: dict[str, Any]) -> FirmwareSettings:
    return of_bootloader((domain.get("firmware") or {}).get("bootloader"))


def bootloader(vm: dict[str, Any]) -> dict[str, Any] | None:
    return copy.deepcopy((_domain(_template_spec(vm)).get("firmware") or {}).get("bootloader"))


def status(vm: dict[str, Any], vmi: dict[str, Any] | None) -> FirmwareStatus:
    pending = of_domain(_domain(_template_spec(vm)))
    current = of_domain(_domain(vmi.get("spec"))) if vmi is not None and vmi_alive(vmi) else None
    return FirmwareStatus(pending, current)


def smm_enabled(vm: dict[str, Any]) -> bool:
    smm = (_domain(_template_spec(vm)).get("features") or {}).get("smm")
    return smm is not None and smm.get("enabled", True) is not False


# --- deciding ---------------------------------------------------------------------------------------


def resulting(pending: FirmwareSettings, change: FirmwareChange) -> FirmwareSettings:
    """The settings once `change` is applied; raises FirmwareConflict for a combination KubeVirt cannot
    boot (Secure Boot with a BIOS boot), naming the setting the request changed."""
    mode = pending.boot_mode if change.boot_mode is None else change.boot_mode
    secure = pending.secure_boot if change.secure_boot is None else change.secure_boot
    if mode is BootMode.LEGACY and secure:
        if change.boot_mode is BootMode.LEGACY:
            raise FirmwareConflict(
                "a BIOS (Legacy) boot has no Secure Boot; turn Secure Boot off as well",
                "boot_mode", "secure_boot",
            )
        raise FirmwareConflict(
            "Secure Boot needs UEFI and the VM boots with BIOS (Legacy); switch the boot mode to UEFI too",
            "secure_boot", "boot_mode",
        )
    return FirmwareSettings(mode, secure)


def changed_bootloader(current: dict[str, Any] | None, wanted: FirmwareSettings) -> dict[str, Any] | None:
    """`current` turned into `wanted`: the mode replaces the bootloader (an absent one stays absent for
    BIOS); Secure Boot is written explicitly into `efi`, whose other keys (`persistent`...) are kept."""
    have = of_bootloader(current)
    if wanted.boot_mode is BootMode.LEGACY:
        return current if have.boot_mode is BootMode.LEGACY else {"bios": {}}
    efi = dict((current or {}).get("efi") or {}) if have.boot_mode is BootMode.UEFI else {}
    if efi.get("secureBoot") is not None and have.secure_boot == wanted.secure_boot:
        return current  # already written explicitly as wanted
    efi["secureBoot"] = wanted.secure_boot
    return {"efi": efi}


def plan(vm: dict[str, Any], wanted: FirmwareSettings) -> Patch:
    """JSON Patch operations (without guards) that give the VM's template `wanted`; [] = already so."""
    domain = _domain(_template_spec(vm))
    ops: Patch = []
    current = bootloader(vm)
    new = changed_bootloader(current, wanted)
    if new != current:
        if domain.get("firmware") is None:
            ops.append({"op": "add", "path": FIRMWARE_PATH, "value": {"bootloader": new}})
        else:
            ops.append({"op": "add", "path": f"{FIRMWARE_PATH}/bootloader", "value": new})
    if wanted.secure_boot and not smm_enabled(vm):
        features = domain.get("features")
        if features is None:
            ops.append({"op": "add", "path": FEATURES_PATH, "value": {"smm": {"enabled": True}}})
        elif features.get("smm") is None:
            ops.append({"op": "add", "path": f"{FEATURES_PATH}/smm", "value": {"enabled": True}})
        else:
            ops.append({"op": "add", "path": f"{FEATURES_PATH}/smm/enabled", "value": True})
    return ops


def restored_with(stored: StoredOverride | None, change: FirmwareChange) -> StoredOverride | None:
    """A pending Once override with `change` applied to the bootloader its restore puts back, so a setting
    made while it is pending outlives it; None when there is none or nothing changes (a change that cannot
    apply there, Secure Boot for a BIOS restore, is left out)."""
    if stored is None or not stored.pending_once:
        return None
    try:
        wanted = resulting(of_bootloader(stored.saved_firmware), change)
    except FirmwareConflict:
        return None
    saved = changed_bootloader(stored.saved_firmware, wanted)
    return None if saved == stored.saved_firmware else dataclasses.replace(stored, saved_firmware=saved)
