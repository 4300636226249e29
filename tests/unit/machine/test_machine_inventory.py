"""Inventory from the VM spec (and VMI status for MACs, PVCs for sizes)."""

from __future__ import annotations

from machine_vms import vm, vmi

from vmbmc.machine.inventory import disk_claims, inventory, parse_quantity
from vmbmc.machine.types import BootMode, Disk, Nic


def full_vm() -> dict:
    v = vm(
        interfaces=[
            {"name": "default", "masquerade": {}, "macAddress": "52:54:00:AA:BB:CC", "model": "e1000"},
            {"name": "prov", "bridge": {}},
        ],
        disks=[
            {"name": "root", "disk": {"bus": "virtio"}},
            {"name": "data", "lun": {}},
            {"name": "scratch", "disk": {}},
            {"name": "claim", "disk": {"bus": "scsi"}},
            {"name": "iso", "cdrom": {"bus": "sata"}},
        ],
        firmware={"uuid": "11111111-2222-3333-4444-555555555555", "bootloader": {"efi": {}}},
        domain_extra={"cpu": {"cores": 2, "sockets": 2, "threads": 2}, "memory": {"guest": "3Gi"}},
    )
    v["spec"]["dataVolumeTemplates"] = [
        {
            "metadata": {"name": "root-dv"},
            "spec": {"storage": {"resources": {"requests": {"storage": "20Gi"}}}},
        },
        {"metadata": {"name": "data-dv"}, "spec": {"pvc": {"resources": {"requests": {"storage": "1G"}}}}},
    ]
    v["spec"]["template"]["spec"]["volumes"] = [
        {"name": "root", "dataVolume": {"name": "root-dv"}},
        {"name": "data", "dataVolume": {"name": "data-dv"}},
        {"name": "scratch", "emptyDisk": {"capacity": "2Gi"}},
        {"name": "claim", "persistentVolumeClaim": {"claimName": "pvc-1"}},
        {"name": "iso", "containerDisk": {"image": "x"}},
    ]
    return v


def test_full_inventory() -> None:
    running = vmi()
    running["status"]["interfaces"] = [{"name": "prov", "mac": "02:5a:4b:00:00:01"}]
    pvcs = {
        "pvc-1": {
            "spec": {"resources": {"requests": {"storage": "5Gi"}}},
            "status": {"capacity": {"storage": "6Gi"}},
        }
    }
    inv = inventory(full_vm(), running, pvcs)
    assert inv.uuid == "11111111-2222-3333-4444-555555555555"
    assert (inv.namespace, inv.name) == ("ns", "vm1")
    assert inv.cpus == 8
    assert inv.memory_bytes == 3 << 30
    assert inv.nics == (
        Nic("default", "52:54:00:aa:bb:cc", "e1000"),
        Nic("prov", "02:5a:4b:00:00:01", "virtio"),
    )
    assert inv.disks == (
        Disk("root", "disk", 20 << 30, "virtio"),
        Disk("data", "lun", 10**9, ""),
        Disk("scratch", "disk", 2 << 30, ""),
        Disk("claim", "disk", 6 << 30, "scsi"),
        Disk("iso", "cdrom", None, "sata"),
    )
    assert inv.boot_mode is BootMode.UEFI


def test_disk_claims_name_what_a_kbmc_reads() -> None:
    """The PVCs and DataVolumes of disks and LUNs (a DataVolume's PVC has its name); no CD-ROM's."""
    v = full_vm()
    v["spec"]["template"]["spec"]["domain"]["devices"]["disks"].append({"name": "media", "cdrom": {}})
    v["spec"]["template"]["spec"]["volumes"].append({"name": "media", "dataVolume": {"name": "media-dv"}})
    assert disk_claims(v) == (("data-dv", "pvc-1", "root-dv"), ("data-dv", "root-dv"))
    assert disk_claims({"metadata": {"name": "x"}}) == ((), ())


def test_sizes_prefer_what_kubernetes_allocated() -> None:
    """A bound PVC's capacity (a provisioner may round up) beats every request; then the PVC's request,
    the DataVolume's, the VM's template; a PVC without either falls through to its DataVolume."""
    root = {
        "status": {"capacity": {"storage": "21Gi"}},
        "spec": {"resources": {"requests": {"storage": "20Gi"}}},
    }
    pending = {"spec": {"resources": {"requests": {"storage": "3Gi"}}}}  # not bound yet: its request
    empty = {"spec": {}}  # nothing known: the DataVolume says
    dvs = {"data-dv": {"spec": {"storage": {"resources": {"requests": {"storage": "4Gi"}}}}}}
    inv = inventory(full_vm(), None, {"root-dv": root, "pvc-1": pending, "data-dv": empty}, dvs)
    sizes = {d.name: d.size_bytes for d in inv.disks}
    assert sizes == {"root": 21 << 30, "data": 4 << 30, "scratch": 2 << 30, "claim": 3 << 30, "iso": None}


def test_fallbacks() -> None:
    v = vm(interfaces=[{"name": "default", "masquerade": {}}], disks=[{"name": "root", "disk": {}}])
    v["spec"]["template"]["spec"]["domain"]["resources"] = {"requests": {"cpu": "1500m", "memory": "512Mi"}}
    inv = inventory(v)  # no VMI, no PVCs
    assert inv.uuid == "vm-uid-1"  # metadata.uid when there is no firmware uuid
    assert inv.cpus == 2  # 1.5 CPUs rounds up
    assert inv.memory_bytes == 512 << 20
    assert inv.nics == (Nic("default", "", "virtio"),)
    assert inv.disks == (Disk("root", "disk", None, ""),)
    assert inv.boot_mode is BootMode.LEGACY


def test_empty_vm() -> None:
    inv = inventory({"metadata": {"name": "x", "namespace": "n", "uid": "u"}})
    assert (inv.cpus, inv.memory_bytes, inv.nics, inv.disks) == (1, 0, (), ())


def test_parse_quantity() -> None:
    assert parse_quantity("4Gi") == 4 << 30
    assert parse_quantity("500m") == parse_quantity("0.5")
    assert parse_quantity("bogus") is None
    assert parse_quantity(None) is None
