"""Boot overrides as KubeVirt can carry them: grouped `bootOrder` numbers and `firmware.bootloader`.

Pure functions on the VirtualMachine dict. KubeVirt has no one-time boot, so a boot device is a
`bootOrder` (1..N, unique) on the template's disks and interfaces, target group first
(then the rest, numbered 1..N), and a Once override is a backup of the previous numbers that the back end
restores when a new VMI has booted. The stored record is the BMC's `status.bootOverride`.
Every patch is a JSON Patch whose first operations `test` the VM's uid and resourceVersion, so a VM
deleted and re-created under the same name, or changed since it was read, is never patched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from vmbmc.machine.errors import Invalid, NotSupported
from vmbmc.machine.media import MEDIA_NAME as MEDIA_DISK
from vmbmc.machine.types import BootMode, BootOverride, BootPersistence, BootTarget

DEVICES_PATH = "/spec/template/spec/domain/devices"
FIRMWARE_PATH = "/spec/template/spec/domain/firmware"

INTERFACE, DISK, CDROM = "interface", "disk", "cdrom"
# Target group first, then the rest (CD-ROMs last unless they are the target).
GROUP_ORDER: dict[BootTarget, tuple[str, str, str]] = {
    BootTarget.PXE: (INTERFACE, DISK, CDROM),
    BootTarget.HDD: (DISK, INTERFACE, CDROM),
    BootTarget.CD: (CDROM, DISK, INTERFACE),
}
_TARGET_GROUP = {BootTarget.PXE: INTERFACE, BootTarget.HDD: DISK, BootTarget.CD: CDROM}
_NO_DEVICE = {
    BootTarget.PXE: "the VM has no network interface to boot from (Pxe)",
    BootTarget.HDD: "the VM has no disk to boot from (Hdd)",
    BootTarget.CD: "the VM has no CD-ROM drive to boot from (Cd)",
}

Patch = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Device:
    key: str  # "disk:<name>" | "cdrom:<name>" | "interface:<name>" (as in status.bootOverride.savedBootOrder)
    group: str  # INTERFACE | DISK | CDROM
    path: str  # JSON pointer of the device entry
    boot_order: int  # 0 = none


def _domain(vm: dict[str, Any]) -> dict[str, Any]:
    return (((vm.get("spec") or {}).get("template") or {}).get("spec") or {}).get("domain") or {}


def devices(vm: dict[str, Any]) -> list[Device]:
    """Interfaces, then disks, as the template lists them. `lun` and `floppy` count as disks."""
    devs = _domain(vm).get("devices") or {}
    out = []
    for i, iface in enumerate(devs.get("interfaces") or []):
        out.append(
            Device(
                f"interface:{iface.get('name', '')}",
                INTERFACE,
                f"{DEVICES_PATH}/interfaces/{i}",
                int(iface.get("bootOrder") or 0),
            )
        )
    for i, disk in enumerate(devs.get("disks") or []):
        group = CDROM if "cdrom" in disk else DISK
        out.append(
            Device(
                f"{group}:{disk.get('name', '')}",
                group,
                f"{DEVICES_PATH}/disks/{i}",
                int(disk.get("bootOrder") or 0),
            )
        )
    return out


def supported_targets(vm: dict[str, Any]) -> tuple[BootTarget, ...]:
    """None always; Pxe with a NIC, Hdd with a disk, Cd with a CD-ROM. BiosSetup never (no KubeVirt knob)."""
    groups = {d.group for d in devices(vm)}
    return (BootTarget.NONE, *tuple(t for t, g in _TARGET_GROUP.items() if g in groups))


def check_target(vm: dict[str, Any], target: BootTarget) -> None:
    if target is BootTarget.BIOS_SETUP:
        raise NotSupported("BiosSetup is not supported: KubeVirt cannot boot a VM into its firmware setup")
    if target is not BootTarget.NONE and target not in supported_targets(vm):
        raise NotSupported(f"boot target {target.value} is not supported: {_NO_DEVICE[target]}")


def boot_orders_for(vm: dict[str, Any], target: BootTarget) -> dict[str, int]:
    """New bootOrder per device key: the target group first, numbered 1..N in template order; among the
    CD-ROMs the BMC's virtual CD comes first (an inserted image is what `Cd` means to a BMC client)."""
    devs = sorted(devices(vm), key=lambda d: d.key != f"{CDROM}:{MEDIA_DISK}")  # stable: template order
    out: dict[str, int] = {}
    n = 0
    for group in GROUP_ORDER[target]:
        for d in devs:
            if d.group == group:
                n += 1
                out[d.key] = n
    return out


def effective_target(vm: dict[str, Any]) -> BootTarget:
    """The group of the device with the lowest bootOrder (None when no device has one)."""
    numbered = [d for d in devices(vm) if d.boot_order > 0]
    if not numbered:
        return BootTarget.NONE
    first = min(numbered, key=lambda d: d.boot_order)
    return {INTERFACE: BootTarget.PXE, DISK: BootTarget.HDD, CDROM: BootTarget.CD}[first.group]


# --- firmware ---------------------------------------------------------------------------------


def bootloader(vm: dict[str, Any]) -> dict[str, Any] | None:
    """The exact `firmware.bootloader` (a copy), None when absent."""
    bl = (_domain(vm).get("firmware") or {}).get("bootloader")
    return copy.deepcopy(bl) if bl is not None else None


def boot_mode(vm: dict[str, Any]) -> BootMode:
    """UEFI with an `efi` bootloader; no bootloader counts as BIOS (Legacy)."""
    bl = bootloader(vm)
    return BootMode.UEFI if bl is not None and "efi" in bl else BootMode.LEGACY


def _smm_enabled(vm: dict[str, Any]) -> bool:
    smm = (_domain(vm).get("features") or {}).get("smm")
    return smm is not None and smm.get("enabled", True) is not False


def _bootloader_for(vm: dict[str, Any], mode: BootMode) -> dict[str, Any]:
    if mode is BootMode.UEFI:
        # Secure Boot needs SMM; KubeVirt defaults secureBoot to true, which fails without it.
        return {"efi": {"secureBoot": _smm_enabled(vm)}}
    return {"bios": {}}


def _set_bootloader_ops(vm: dict[str, Any], value: dict[str, Any] | None) -> Patch:
    firmware = _domain(vm).get("firmware") or {}
    if value is None:
        if "bootloader" not in firmware:
            return []
        if set(firmware) == {"bootloader"}:
            # We added the firmware object along with the bootloader: absent stays absent.
            return [{"op": "remove", "path": FIRMWARE_PATH}]
        return [{"op": "remove", "path": f"{FIRMWARE_PATH}/bootloader"}]
    if bootloader(vm) == value:
        return []
    if _domain(vm).get("firmware") is None:
        return [{"op": "add", "path": FIRMWARE_PATH, "value": {"bootloader": value}}]
    return [{"op": "add", "path": f"{FIRMWARE_PATH}/bootloader", "value": value}]


def mode_ops(vm: dict[str, Any], mode: BootMode) -> Patch:
    """Switch to `mode`; a mode already in effect changes nothing."""
    if boot_mode(vm) is mode:
        return []
    return _set_bootloader_ops(vm, _bootloader_for(vm, mode))


# --- patches ----------------------------------------------------------------------------------


def guard_ops(vm: dict[str, Any]) -> Patch:
    meta = vm.get("metadata") or {}
    return [
        {"op": "test", "path": "/metadata/uid", "value": meta.get("uid")},
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")},
    ]


def order_ops(vm: dict[str, Any], target: BootTarget) -> Patch:
    wanted = boot_orders_for(vm, target)
    return [
        {"op": "add", "path": f"{d.path}/bootOrder", "value": wanted[d.key]}
        for d in devices(vm)
        if d.boot_order != wanted[d.key]
    ]


def boot_settings(vm: dict[str, Any]) -> tuple[Any, ...]:
    """What a boot override changes in a VM: each device's bootOrder and the exact bootloader."""
    return tuple((d.key, d.boot_order) for d in devices(vm)), bootloader(vm)


def saved_boot_order(vm: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"device": d.key, "bootOrder": d.boot_order} for d in devices(vm)]


def restore_ops(vm: dict[str, Any], stored: StoredOverride) -> Patch:
    """Put back exactly what a Once override saved: bootOrder 0 deletes the key, an absent bootloader
    stays absent. Devices removed since are skipped; devices added since are left alone."""
    if stored.saved_boot_order is None:
        return []
    by_key = {d.key: d for d in devices(vm)}
    ops: Patch = []
    for entry in stored.saved_boot_order:
        d = by_key.get(str(entry.get("device")))
        if d is None:
            continue
        want = int(entry.get("bootOrder") or 0)
        if want == 0 and d.boot_order:
            ops.append({"op": "remove", "path": f"{d.path}/bootOrder"})
        elif want and want != d.boot_order:
            ops.append({"op": "add", "path": f"{d.path}/bootOrder", "value": want})
    return ops + _set_bootloader_ops(vm, stored.saved_firmware)


# --- the stored record ------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredOverride:
    """`status.bootOverride`, or the same data in a VM annotation in standalone mode."""

    target: BootTarget = BootTarget.NONE
    enabled: BootPersistence = BootPersistence.DISABLED
    mode: BootMode = BootMode.LEGACY
    saved_boot_order: list[dict[str, Any]] | None = None  # None: nothing to restore
    saved_firmware: dict[str, Any] | None = None  # the bootloader before; None = there was none
    vmi_uid: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""  # the request that set the override (a Once restore names it; a restart checks it)

    @property
    def pending_once(self) -> bool:
        return self.enabled is BootPersistence.ONCE and self.saved_boot_order is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "target": self.target.value,
            "enabled": self.enabled.value,
            "mode": self.mode.value,
        }
        if self.saved_boot_order is not None:
            out["savedBootOrder"] = copy.deepcopy(self.saved_boot_order)
            if self.saved_firmware is not None:
                out["savedFirmware"] = copy.deepcopy(self.saved_firmware)
            out["vmiUID"] = self.vmi_uid
        if self.request_id:
            out["requestId"] = self.request_id
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> StoredOverride | None:
        if not data:
            return None
        try:
            return cls(
                target=BootTarget(data.get("target") or BootTarget.NONE),
                enabled=BootPersistence(data.get("enabled") or BootPersistence.DISABLED),
                mode=BootMode(data.get("mode") or BootMode.LEGACY),
                saved_boot_order=copy.deepcopy(data["savedBootOrder"]) if "savedBootOrder" in data else None,
                saved_firmware=copy.deepcopy(data.get("savedFirmware")),
                vmi_uid=str(data.get("vmiUID") or ""),
                request_id=str(data.get("requestId") or ""),
            )
        except ValueError:
            return None  # written by someone else in a shape we do not know: treat as no override

    def reported(self, vm: dict[str, Any]) -> BootOverride:
        if self.enabled is BootPersistence.DISABLED or self.target is BootTarget.NONE:
            return BootOverride(mode=boot_mode(vm))
        return BootOverride(target=self.target, enabled=self.enabled, mode=boot_mode(vm))


def in_effect(vm: dict[str, Any], stored: StoredOverride) -> bool:
    """Does the VM carry the stored override (its target's boot order and its mode)?"""
    if stored.enabled is BootPersistence.DISABLED or stored.target is BootTarget.NONE:
        return True
    return not order_ops(vm, stored.target) and boot_mode(vm) is stored.mode


def reported(vm: dict[str, Any], stored: StoredOverride | None) -> BootOverride:
    """What a client sees: the stored override, with the boot mode the VM's spec has now."""
    return stored.reported(vm) if stored else BootOverride(mode=boot_mode(vm))


@dataclass(frozen=True)
class OverridePlan:
    ops: Patch  # without guard ops; [] = nothing to change in the VM
    stored: StoredOverride | None  # the record to store; None = clear it
    result: BootOverride  # what the client sees once it is applied


def plan_override(
    vm: dict[str, Any],
    stored: StoredOverride | None,
    vmi_uid: str,
    *,
    target: BootTarget | None = None,
    enabled: BootPersistence | None = None,
    mode: BootMode | None = None,
    request_id: str = "",
) -> OverridePlan:
    """Validate and plan a boot override request (`None` keeps that part as it is).

    `request_id` is kept with the override, so the restore that consumes a Once override can name it, and
    a restarted kbmc can tell whether the request that set it got as far as the VM.
    Raises NotSupported for a target the VM cannot honour, Invalid for a nonsensical combination.
    """
    cur = stored or StoredOverride(mode=boot_mode(vm))
    new_target = cur.target if target is None else target
    new_enabled = cur.enabled if enabled is None else enabled
    if target not in (None, BootTarget.NONE) and enabled is None and new_enabled is BootPersistence.DISABLED:
        # Naming a target while no override is set means "boot from it next time" (as BMCs do).
        new_enabled = BootPersistence.ONCE
    check_target(vm, new_target)
    if mode is not None and not isinstance(mode, BootMode):
        raise Invalid(f"unknown boot mode {mode!r}")
    active = new_target is not BootTarget.NONE and new_enabled is not BootPersistence.DISABLED
    ops: Patch = []
    work = vm
    if not active:
        if cur.pending_once:
            ops = restore_ops(vm, cur)
            work = applied(vm, ops)
        if mode is not None:
            ops += mode_ops(work, mode)
            work = applied(vm, ops)
        return OverridePlan(ops, None, BootOverride(mode=boot_mode(work)))
    ops = order_ops(vm, new_target)
    if mode is not None:
        ops += mode_ops(vm, mode)
    work = applied(vm, ops)
    if new_enabled is BootPersistence.ONCE:
        if cur.pending_once:  # a second Once before the reboot keeps the first backup
            saved, firmware, uid = cur.saved_boot_order, cur.saved_firmware, cur.vmi_uid
        else:
            saved, firmware, uid = saved_boot_order(vm), bootloader(vm), vmi_uid
        record = StoredOverride(
            new_target, new_enabled, boot_mode(work), saved, firmware, uid, request_id=request_id
        )
    else:
        record = StoredOverride(new_target, new_enabled, boot_mode(work), request_id=request_id)
    return OverridePlan(ops, record, BootOverride(new_target, new_enabled, boot_mode(work)))


def applied(vm: dict[str, Any], ops: Patch) -> dict[str, Any]:
    """The VM as it will be once `ops` are applied (for reading back the resulting mode)."""
    if not ops:
        return vm
    return jsonpatch.apply_patch(vm, ops)
