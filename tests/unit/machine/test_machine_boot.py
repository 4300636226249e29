"""Boot order, Once backup/restore and UEFI/Legacy switching (stored in `status.bootOverride`)."""

from __future__ import annotations

import itertools
from typing import Any

import jsonpatch
import pytest
from machine_vms import clone, vm

from vmbmc.machine import boot
from vmbmc.machine.errors import NotSupported
from vmbmc.machine.types import BootMode, BootOverride, BootPersistence, BootTarget

T, E = BootTarget, BootPersistence
NIC = {"name": "nic0", "masquerade": {}}
NIC2 = {"name": "nic1", "bridge": {}, "bootOrder": 7}
DISK = {"name": "root", "disk": {"bus": "virtio"}, "bootOrder": 1}
LUN = {"name": "lun0", "lun": {}}
FLOPPY = {"name": "fd0", "floppy": {}}
CD = {"name": "cd0", "cdrom": {"bus": "sata"}}
BARE = {"name": "bare"}  # no kind key: a disk


def orders(v: dict[str, Any]) -> dict[str, int]:
    return {d.key: d.boot_order for d in boot.devices(v)}


def apply(v: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    return jsonpatch.apply_patch(v, boot.guard_ops(v) + ops)


MIXES = {
    "nic+disk+cd": ([NIC], [DISK, CD]),
    "2nics+lun+floppy+cd+bare": ([NIC, NIC2], [CD, LUN, FLOPPY, BARE]),
    "disk only": ([], [DISK]),
    "cd only": ([], [CD]),
    "nic only": ([NIC], []),
    "nothing": ([], []),
}
WANT_GROUPS = {
    T.PXE: ("interface", "disk", "cdrom"),
    T.HDD: ("disk", "interface", "cdrom"),
    T.CD: ("cdrom", "disk", "interface"),
}


@pytest.mark.parametrize("target", [T.PXE, T.HDD, T.CD])
@pytest.mark.parametrize("mix", list(MIXES))
def test_boot_order_for_every_target_and_mix(mix: str, target: BootTarget) -> None:
    ifaces, disks = MIXES[mix]
    v = vm(interfaces=clone({"x": ifaces})["x"], disks=clone({"x": disks})["x"])
    if target not in boot.supported_targets(v):
        with pytest.raises(NotSupported):
            boot.plan_override(v, None, "", target=target, enabled=E.CONTINUOUS)
        return
    plan = boot.plan_override(v, None, "", target=target, enabled=E.CONTINUOUS)
    after = apply(v, plan.ops)
    got = orders(after)
    # 1..N, unique, and the target group's devices first, groups in the table's order, template order inside
    assert sorted(got.values()) == list(range(1, len(got) + 1))
    by_order = [k for k, _ in sorted(got.items(), key=lambda kv: kv[1])]
    group_rank = {g: i for i, g in enumerate(WANT_GROUPS[target])}
    assert [group_rank[k.split(":")[0]] for k in by_order] == sorted(
        group_rank[k.split(":")[0]] for k in by_order
    )
    template_order = [d.key for d in boot.devices(v)]
    for _, same in itertools.groupby(by_order, key=lambda k: k.split(":")[0]):
        keys = list(same)
        assert keys == [k for k in template_order if k in keys]
    assert boot.effective_target(after) is target
    assert plan.result == BootOverride(target, E.CONTINUOUS, BootMode.LEGACY)
    # a Continuous override stores a marker only
    assert plan.stored is not None and plan.stored.saved_boot_order is None


def test_patch_is_guarded_by_uid_and_resource_version() -> None:
    v = vm(interfaces=[NIC], disks=[DISK, CD])
    ops = boot.guard_ops(v)
    assert ops == [
        {"op": "test", "path": "/metadata/uid", "value": "vm-uid-1"},
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
    ]
    other = clone(v)
    other["metadata"]["resourceVersion"] = "43"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(other, ops + boot.order_ops(v, T.PXE))


@pytest.mark.parametrize(
    "target,why",
    [(T.PXE, "network interface"), (T.CD, "CD-ROM"), (T.HDD, "no disk"), (T.BIOS_SETUP, "firmware setup")],
)
def test_targets_the_vm_cannot_honour_are_refused(target: BootTarget, why: str) -> None:
    v = vm(interfaces=[], disks=[])
    with pytest.raises(NotSupported, match=why):
        boot.plan_override(v, None, "", target=target, enabled=E.ONCE)


def test_supported_targets() -> None:
    assert boot.supported_targets(vm(interfaces=[], disks=[DISK])) == (T.NONE, T.HDD)
    assert boot.supported_targets(vm(interfaces=[NIC], disks=[DISK, CD])) == (T.NONE, T.PXE, T.HDD, T.CD)
    assert T.BIOS_SETUP not in boot.supported_targets(vm())


def once_then_restore(
    v: dict[str, Any], **kw: Any
) -> tuple[dict[str, Any], dict[str, Any], boot.StoredOverride]:
    plan = boot.plan_override(v, None, "vmi-a", **kw)
    assert plan.stored is not None
    # the record survives a round trip through the API (status or annotation)
    stored = boot.StoredOverride.from_dict(plan.stored.to_dict())
    assert stored == plan.stored
    applied = apply(v, plan.ops)
    restored = apply(applied, boot.restore_ops(applied, stored))
    return applied, restored, stored


@pytest.mark.parametrize(
    "firmware",
    [
        None,
        {"bootloader": {"bios": {"useSerial": True}}},
        {"uuid": "u-1"},
        {"bootloader": {"efi": {"secureBoot": False}}},
    ],
)
@pytest.mark.parametrize("mode", [None, BootMode.UEFI, BootMode.LEGACY])
@pytest.mark.parametrize("target", [T.PXE, T.HDD, T.CD])
def test_once_restores_exactly(target: BootTarget, mode: BootMode | None, firmware: dict | None) -> None:
    v = vm(
        interfaces=[clone(NIC), clone(NIC2)], disks=[clone(DISK), clone(CD), clone(LUN)], firmware=firmware
    )
    applied, restored, stored = once_then_restore(v, target=target, enabled=E.ONCE, mode=mode)
    assert boot.effective_target(applied) is target
    if mode is not None:
        assert boot.boot_mode(applied) is mode
    assert restored == v  # bootOrder 0 deletes the key, an absent bootloader stays absent, the rest as it was
    assert stored.vmi_uid == "vmi-a"
    assert {"device": "interface:nic0", "bootOrder": 0} in stored.saved_boot_order


def test_second_once_keeps_first_backup() -> None:
    v = vm(interfaces=[clone(NIC)], disks=[clone(DISK), clone(CD)])
    first = boot.plan_override(v, None, "vmi-a", target=T.PXE, enabled=E.ONCE)
    v2 = apply(v, first.ops)
    second = boot.plan_override(v2, first.stored, "vmi-a", target=T.CD, enabled=E.ONCE, mode=BootMode.UEFI)
    assert second.stored is not None and first.stored is not None
    assert second.stored.saved_boot_order == first.stored.saved_boot_order
    assert second.stored.saved_firmware is None and second.stored.target is T.CD
    v3 = apply(v2, second.ops)
    assert boot.effective_target(v3) is T.CD and boot.boot_mode(v3) is BootMode.UEFI
    assert apply(v3, boot.restore_ops(v3, second.stored)) == v


def test_disabled_restores_a_pending_once_and_clears() -> None:
    v = vm(interfaces=[clone(NIC)], disks=[clone(DISK), clone(CD)])
    once = boot.plan_override(v, None, "vmi-a", target=T.CD, enabled=E.ONCE, mode=BootMode.UEFI)
    v2 = apply(v, once.ops)
    off = boot.plan_override(v2, once.stored, "vmi-a", enabled=E.DISABLED)
    assert off.stored is None
    assert apply(v2, off.ops) == v
    assert off.result == BootOverride(T.NONE, E.DISABLED, BootMode.LEGACY)
    # target None means the same
    assert boot.plan_override(v2, once.stored, "vmi-a", target=T.NONE).ops == off.ops


def test_continuous_is_not_restored_and_disabled_after_it_changes_nothing() -> None:
    v = vm(interfaces=[clone(NIC)], disks=[clone(DISK)])
    cont = boot.plan_override(v, None, "", target=T.PXE, enabled=E.CONTINUOUS)
    v2 = apply(v, cont.ops)
    off = boot.plan_override(v2, cont.stored, "", enabled=E.DISABLED)
    assert off.ops == [] and off.stored is None


def test_a_mode_already_in_effect_changes_nothing() -> None:
    legacy = vm(interfaces=[clone(NIC)], disks=[])
    assert boot.mode_ops(legacy, BootMode.LEGACY) == []  # no bootloader counts as BIOS
    bios = vm(firmware={"bootloader": {"bios": {}}})
    assert boot.mode_ops(bios, BootMode.LEGACY) == []
    efi = vm(firmware={"bootloader": {"efi": {"secureBoot": True}}})
    assert boot.mode_ops(efi, BootMode.UEFI) == []
    # asking for the order it already has changes nothing either
    v = vm(interfaces=[clone(NIC)], disks=[clone(DISK)])
    v2 = apply(v, boot.order_ops(v, T.HDD))
    assert boot.order_ops(v2, T.HDD) == []


def test_uefi_secure_boot_follows_smm() -> None:
    plain = apply(vm(), boot.mode_ops(vm(), BootMode.UEFI))
    assert boot.bootloader(plain) == {"efi": {"secureBoot": False}}
    smm = vm(domain_extra={"features": {"smm": {}}})
    assert boot.bootloader(apply(smm, boot.mode_ops(smm, BootMode.UEFI))) == {"efi": {"secureBoot": True}}
    efi = vm(firmware={"bootloader": {"efi": {}}})
    assert boot.bootloader(apply(efi, boot.mode_ops(efi, BootMode.LEGACY))) == {"bios": {}}


def test_target_alone_means_once_and_mode_alone_keeps_no_override() -> None:
    v = vm(interfaces=[clone(NIC)], disks=[clone(DISK)])
    plan = boot.plan_override(v, None, "u", target=T.PXE)
    assert plan.result.enabled is E.ONCE
    mode_only = boot.plan_override(v, None, "u", mode=BootMode.UEFI)
    assert mode_only.stored is None and mode_only.result == BootOverride(mode=BootMode.UEFI)
    assert boot.boot_mode(apply(v, mode_only.ops)) is BootMode.UEFI


def test_reported_override() -> None:
    v = vm(firmware={"bootloader": {"efi": {}}})
    assert boot.reported(v, None) == BootOverride(mode=BootMode.UEFI)
    rec = boot.StoredOverride(T.CD, E.ONCE, BootMode.UEFI, [], None, "x")
    assert boot.reported(v, rec) == BootOverride(T.CD, E.ONCE, BootMode.UEFI)
    assert boot.StoredOverride.from_dict({"target": "Floppy"}) is None
    assert boot.StoredOverride.from_dict(None) is None


@pytest.mark.parametrize("enabled", [E.ONCE, E.CONTINUOUS])
def test_in_effect_tells_a_stored_override_the_vm_has_from_one_it_never_got(enabled: BootPersistence) -> None:
    """What a restarted kbmc checks: the record names the request, and the VM carries its order and mode."""
    v = vm(interfaces=[clone(NIC)], disks=[clone(DISK), clone(CD)])
    plan = boot.plan_override(
        v, None, "u", target=T.PXE, enabled=enabled, mode=BootMode.UEFI, request_id="r1"
    )
    assert plan.stored is not None and plan.stored.request_id == "r1"
    assert boot.StoredOverride.from_dict(plan.stored.to_dict()) == plan.stored  # requestId round-trips
    assert not boot.in_effect(v, plan.stored)  # stored, VM not patched (a kbmc killed in between)
    assert boot.in_effect(apply(v, plan.ops), plan.stored)
    order_only = apply(v, boot.order_ops(v, T.PXE))
    assert not boot.in_effect(order_only, plan.stored)  # the mode is part of it
    assert boot.in_effect(v, boot.StoredOverride())  # no override: nothing to carry


def test_boot_settings_are_what_a_boot_patch_changes() -> None:
    """A late boot patch is recognised by the settings it sets (every bootOrder and the bootloader)."""
    v = vm(interfaces=[clone(NIC)], disks=[clone(DISK), clone(CD)])
    plan = boot.plan_override(v, None, "u", target=T.CD, enabled=E.ONCE, mode=BootMode.UEFI)
    patched = apply(v, plan.ops)
    assert boot.boot_settings(boot.applied(v, plan.ops)) == boot.boot_settings(patched)
    assert boot.boot_settings(patched) != boot.boot_settings(v)
    other = clone(v)
    other["metadata"]["labels"] = {"x": "y"}  # a change that is not a boot change
    assert boot.boot_settings(other) == boot.boot_settings(v)
    before = boot.StoredOverride(saved_boot_order=boot.saved_boot_order(v), saved_firmware=boot.bootloader(v))
    assert apply(patched, boot.restore_ops(patched, before)) == v  # what the undo of a late patch puts back
