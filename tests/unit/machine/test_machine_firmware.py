"""Firmware settings on the VM dict (vmbmc.machine.firmware): what is read, what is refused, what is patched,
and that every patch gives a VM KubeVirt's admission (the emulator's copy of its checks) accepts."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import jsonpatch
import pytest

from vmbmc.machine import firmware as fw
from vmbmc.machine.boot import StoredOverride
from vmbmc.machine.firmware import FirmwareChange, FirmwareConflict, FirmwareSettings
from vmbmc.machine.types import BootMode, BootPersistence, BootTarget
from vmbmc_devcluster.emulator import kubevirt_state as ks

UEFI, LEGACY = BootMode.UEFI, BootMode.LEGACY
ON = FirmwareSettings(UEFI, True)


def vm(firmware: dict[str, Any] | None = None, features: dict[str, Any] | None = None) -> dict[str, Any]:
    domain: dict[str, Any] = {"devices": {"disks": [{"name": "root", "disk": {}}]}}
    if firmware is not None:
        domain["firmware"] = firmware
    if features is not None:
        domain["features"] = features
    spec = {"template": {"spec": {"domain": domain}}}
    return {"metadata": {"uid": "u", "resourceVersion": "1"}, "spec": spec}


def vmi_of(v: dict[str, Any], phase: str = "Running") -> dict[str, Any]:
    return {"spec": copy.deepcopy(v["spec"]["template"]["spec"]), "status": {"phase": phase}}


def test_reading_pending_and_current() -> None:
    assert fw.status(vm(), None) == fw.FirmwareStatus(FirmwareSettings(LEGACY, False), None)
    assert fw.of_bootloader({"bios": {}}) == FirmwareSettings(LEGACY, False)
    assert fw.of_bootloader({"efi": {}}) == FirmwareSettings(UEFI, True)  # KubeVirt's default: on
    assert fw.of_bootloader({"efi": {"secureBoot": False}}) == FirmwareSettings(UEFI, False)
    on = vm({"bootloader": {"efi": {"secureBoot": True}}}, {"smm": {}})
    running = vmi_of(vm())  # the VMI runs what the template had when it was created
    assert fw.status(on, running) == fw.FirmwareStatus(FirmwareSettings(UEFI, True), FirmwareSettings())
    assert fw.status(on, vmi_of(on, "Succeeded")).current is None  # a final VMI runs nothing


def test_conflicts_name_the_setting_the_request_changed() -> None:
    legacy, secure = FirmwareSettings(LEGACY, False), FirmwareSettings(UEFI, True)
    with pytest.raises(FirmwareConflict) as err:
        fw.resulting(legacy, FirmwareChange(secure_boot=True))
    assert (err.value.setting, err.value.other) == ("secure_boot", "boot_mode")
    with pytest.raises(FirmwareConflict) as err:
        fw.resulting(secure, FirmwareChange(boot_mode=LEGACY))
    assert (err.value.setting, err.value.other) == ("boot_mode", "secure_boot")
    with pytest.raises(FirmwareConflict):
        fw.resulting(legacy, FirmwareChange(LEGACY, True))
    assert fw.resulting(secure, FirmwareChange(LEGACY, False)) == legacy
    assert fw.resulting(legacy, FirmwareChange(UEFI, True)) == secure
    assert fw.resulting(legacy, FirmwareChange(secure_boot=False)) == legacy  # nothing to turn off


def test_bootloader_changes_keep_what_they_do_not_touch() -> None:
    assert fw.changed_bootloader(None, FirmwareSettings(LEGACY, False)) is None  # absent stays absent
    assert fw.changed_bootloader({"efi": {}}, FirmwareSettings(LEGACY, False)) == {"bios": {}}
    persistent = {"efi": {"persistent": True}}
    assert fw.changed_bootloader(persistent, FirmwareSettings(UEFI, True)) == {
        "efi": {"persistent": True, "secureBoot": True}  # written explicitly, `persistent` kept
    }
    same = {"efi": {"secureBoot": False}}
    assert fw.changed_bootloader(same, FirmwareSettings(UEFI, False)) is same


def test_plan_adds_smm_with_secure_boot_wherever_the_features_stand() -> None:
    for features, path in (
        (None, "/spec/template/spec/domain/features"),
        ({"acpi": {}}, "/spec/template/spec/domain/features/smm"),
        ({"smm": {"enabled": False}}, "/spec/template/spec/domain/features/smm/enabled"),
    ):
        ops = fw.plan(vm({"bootloader": {"efi": {"secureBoot": False}}}, features), ON)
        assert [op["path"] for op in ops] == ["/spec/template/spec/domain/firmware/bootloader", path]
    secure = vm({"bootloader": {"efi": {"secureBoot": True}}}, {"smm": {}})
    assert fw.plan(secure, ON) == []
    off = fw.plan(secure, FirmwareSettings(UEFI, False))
    assert off == [{"op": "add", "path": "/spec/template/spec/domain/firmware/bootloader",
                    "value": {"efi": {"secureBoot": False}}}]  # SMM stays: harmless without Secure Boot


def test_every_planned_vm_passes_kubevirt_admission() -> None:
    """From any VM KubeVirt accepts, any request the machine does not refuse yields a VM it accepts."""
    starts = [
        vm(),
        vm({}),
        vm({"uuid": "x"}),
        vm({"bootloader": {"bios": {}}}),
        vm({"bootloader": {"efi": {"secureBoot": False}}}),
        vm({"bootloader": {"efi": {}}}, {"smm": {}}),
        vm({"bootloader": {"efi": {"secureBoot": True, "persistent": True}}}, {"smm": {"enabled": True}}),
        vm({"bootloader": {"efi": {"secureBoot": False}}}, {"smm": {"enabled": False}}),
    ]
    changes = [FirmwareChange(m, s) for m, s in itertools.product((None, UEFI, LEGACY), (None, True, False))]
    for start, change in itertools.product(starts, changes):
        domain = start["spec"]["template"]["spec"]["domain"]
        assert ks.validate_domain(domain, "d") == []
        try:
            wanted = fw.resulting(fw.status(start, None).pending, change)
        except FirmwareConflict:
            continue
        after = jsonpatch.apply_patch(start, fw.plan(start, wanted))
        assert ks.validate_domain(after["spec"]["template"]["spec"]["domain"], "d") == [], (start, change)
        assert fw.status(after, None).pending == wanted
        assert fw.plan(after, wanted) == []  # applied once, nothing left to do


def test_a_pending_once_override_keeps_the_requested_settings() -> None:
    """The once-restore puts the saved bootloader back: it gets the same change, so a setting made while
    a Once override is pending outlives the override."""
    once = StoredOverride(BootTarget.PXE, BootPersistence.ONCE, UEFI, saved_boot_order=[],
                          saved_firmware={"efi": {"secureBoot": False}}, vmi_uid="a")
    changed = fw.restored_with(once, FirmwareChange(secure_boot=True))
    assert changed is not None and changed.saved_firmware == {"efi": {"secureBoot": True}}
    assert changed.saved_boot_order == [] and changed.target is BootTarget.PXE
    legacy_saved = StoredOverride(BootTarget.PXE, BootPersistence.ONCE, UEFI, saved_boot_order=[])
    assert fw.restored_with(legacy_saved, FirmwareChange(secure_boot=True)) is None  # a BIOS restore
    to_uefi = fw.restored_with(legacy_saved, FirmwareChange(boot_mode=UEFI))
    assert to_uefi is not None and to_uefi.saved_firmware == {"efi": {"secureBoot": False}}
    continuous = StoredOverride(BootTarget.PXE, BootPersistence.CONTINUOUS)
    assert fw.restored_with(continuous, FirmwareChange(UEFI)) is None
    assert fw.restored_with(None, FirmwareChange(UEFI)) is None
