"""Boot overrides against the emulator: grouped bootOrder, Once restore on a new VMI, kbmc restart."""

from __future__ import annotations

import copy
import itertools

import pytest
from machine_cluster import Cluster, unique, wait_for

from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.kubevirt.records import BOOT_ANNOTATION
from vmbmc.machine import (
    BootMode,
    BootOverride,
    BootPersistence,
    BootTarget,
    NotFound,
    NotSupported,
    PowerAction,
    PowerState,
    Protocol,
    Requester,
)
from vmbmc_devcluster.emulator.harness import EmulatorThread

_ids = itertools.count(1)


def req() -> Requester:
    return Requester(Protocol.IPMI, "admin", "127.0.0.1", f"boot-{next(_ids)}")


def orders(vm: dict) -> dict[str, int | None]:
    devs = vm["spec"]["template"]["spec"]["domain"]["devices"]
    out = {f"interface:{i['name']}": i.get("bootOrder") for i in devs.get("interfaces") or []}
    out.update({d["name"]: d.get("bootOrder") for d in devs["disks"]})
    return out


def template(vm: dict | None) -> dict:
    assert vm is not None
    return copy.deepcopy(vm["spec"]["template"])


@pytest.mark.parametrize("standalone", [False, True], ids=["bmc-status", "standalone"])
async def test_once_is_restored_when_a_new_vmi_boots(
    emu: EmulatorThread, cluster: Cluster, standalone: bool
) -> None:
    name = unique()
    cluster.create_vm(name)
    original = template(cluster.vm(name))
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        if standalone:
            m = await hub.machine_for_vm("default", name)
        else:
            cluster.create_bmc(name + "-bmc", name)
            m = await hub.machine_for_bmc("default", name + "-bmc")
        assert m.supported_boot_targets() == (BootTarget.NONE, BootTarget.PXE, BootTarget.HDD, BootTarget.CD)
        who = req()
        shown = m.submit_boot_override(who, target=BootTarget.PXE, enabled=BootPersistence.ONCE)
        assert shown == BootOverride(BootTarget.PXE, BootPersistence.ONCE, BootMode.LEGACY)
        assert m.boot_override() == BootOverride()  # not shown before the VM patch was accepted
        answer = m.answer(who.request_id)
        assert answer is not None and await answer == shown
        assert m.boot_override() == shown  # our own writes, before the watch confirms them
        await wait_for(
            lambda: orders(cluster.vm(name) or {}) == {"interface:default": 1, "rootdisk": 2, "installer": 3},
            what="Pxe boot order",
        )
        if standalone:
            assert BOOT_ANNOTATION in cluster.vm(name)["metadata"]["annotations"]
        else:
            stored = cluster.bmc(name + "-bmc")["status"]["bootOverride"]
            assert stored["savedBootOrder"] == [
                {"device": "interface:default", "bootOrder": 0},
                {"device": "disk:rootdisk", "bootOrder": 1},
                {"device": "cdrom:installer", "bootOrder": 0},
            ]
            assert stored["target"] == "Pxe" and stored["enabled"] == "Once" and stored["vmiUID"] == ""
        # a second Once before the reboot keeps the first backup, and switches to UEFI
        await m.set_boot_override(req(), target=BootTarget.CD, mode=BootMode.UEFI)
        vm = cluster.vm(name)
        assert orders(vm)["installer"] == 1
        assert vm["spec"]["template"]["spec"]["domain"]["firmware"]["bootloader"] == {
            "efi": {"secureBoot": False}
        }
        assert m.boot_override() == BootOverride(BootTarget.CD, BootPersistence.ONCE, BootMode.UEFI)

        await m.act(PowerAction.ON, req())
        await wait_for(lambda: m.power_status().state is PowerState.ON, what="On")
        # the new VMI booted from the override; then the VM is back exactly as it was
        vmi = cluster.vmi(name)
        assert vmi["spec"]["domain"]["devices"]["disks"][1]["bootOrder"] == 1
        await wait_for(lambda: template(cluster.vm(name)) == original, what="restored template")
        await wait_for(lambda: m.boot_override() == BootOverride(), what="override cleared")
        if not standalone:
            assert "bootOverride" not in cluster.bmc(name + "-bmc")["status"]
    finally:
        await hub.close()


async def test_continuous_survives_restarts_and_disabled_keeps_it(
    emu: EmulatorThread, cluster: Cluster
) -> None:
    name = unique()
    cluster.create_vm(name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_vm("default", name)
        await m.set_boot_override(req(), target=BootTarget.CD, enabled=BootPersistence.CONTINUOUS)
        await m.act(PowerAction.ON, req())
        await wait_for(lambda: m.power_status().state is PowerState.ON, what="On")
        await m.act(PowerAction.RESET, req())
        await wait_for(lambda: m.power_status().state is PowerState.ON, what="On again")
        assert orders(cluster.vm(name)) == {"interface:default": 3, "rootdisk": 2, "installer": 1}
        assert m.boot_override().enabled is BootPersistence.CONTINUOUS
        await m.set_boot_override(req(), enabled=BootPersistence.DISABLED)
        assert m.boot_override() == BootOverride()
        assert orders(cluster.vm(name))["installer"] == 1  # a persistent order stays
    finally:
        await hub.close()


async def test_kbmc_restart_mid_override(emu: EmulatorThread, cluster: Cluster) -> None:
    """The override lives in the BMC's status: a new process restores it after a reboot it did not see."""
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    original = template(cluster.vm(name))
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    m = await hub.machine_for_bmc("default", name + "-bmc")
    await m.act(PowerAction.ON, req())
    await wait_for(lambda: m.power_status().state is PowerState.ON, what="On")
    running_uid = m.power_status().vmi_uid
    await m.set_boot_override(req(), target=BootTarget.HDD, enabled=BootPersistence.ONCE, mode=BootMode.UEFI)
    assert cluster.bmc(name + "-bmc")["status"]["bootOverride"]["vmiUID"] == running_uid
    await hub.close()  # the kbmc goes away

    assert cluster.virtctl(name, "restart") == 202  # rebooted while no kbmc runs
    await wait_for(
        lambda: (cluster.vmi(name) or {}).get("metadata", {}).get("uid") not in (None, running_uid),
        what="new VMI",
    )
    assert template(cluster.vm(name)) != original

    hub2 = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        # as a kbmc pod does: watches limited to its own objects (fieldSelector=metadata.name=...)
        m2 = await hub2.machine_for_bmc("default", name + "-bmc", restricted=True)
        assert all(inf.field_selector for inf in hub2._informers.values())
        with pytest.raises(NotFound):
            await hub2.machine_for_bmc("default", "no-such-bmc", restricted=True)
        await wait_for(lambda: template(cluster.vm(name)) == original, what="restore by the new process")
        await wait_for(
            lambda: "bootOverride" not in cluster.bmc(name + "-bmc")["status"], what="record cleared"
        )
        await wait_for(lambda: m2.boot_override() == BootOverride(), what="override cleared in the cache")
    finally:
        await hub2.close()


async def test_targets_the_vm_cannot_honour(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name, interfaces=False, cdrom=False)
    before = cluster.vm(name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_vm("default", name)
        assert m.supported_boot_targets() == (BootTarget.NONE, BootTarget.HDD)
        for target in (BootTarget.PXE, BootTarget.CD, BootTarget.BIOS_SETUP):
            with pytest.raises(NotSupported):
                m.submit_boot_override(req(), target=target, enabled=BootPersistence.ONCE)
            with pytest.raises(NotSupported):
                await m.set_boot_override(req(), target=target)
        assert cluster.vm(name) == before  # nothing written
        assert m.boot_override() == BootOverride()
        inv = m.inventory()
        assert (inv.cpus, inv.memory_bytes, inv.nics) == (2, 1 << 30, ())
        cluster.delete_vm(name)
        await wait_for(lambda: _gone(m), what="VM gone from the cache")
        with pytest.raises(NotFound):
            await m.set_boot_override(req(), target=BootTarget.HDD)
    finally:
        await hub.close()


def _gone(m: object) -> bool:
    try:
        m.power_status()  # type: ignore[attr-defined]
    except NotFound:
        return True
    return False
