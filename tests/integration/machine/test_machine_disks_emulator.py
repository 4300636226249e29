"""Disk sizes from the PVCs and DataVolumes a VM's disks name, read by name by the back end: what
Kubernetes allocated (the emulator binds each claim as a provisioner does), followed when the VM's disks
change, with a DataVolume template's request standing in until its PVC exists."""

from __future__ import annotations

from typing import Any

from machine_cluster import Cluster, unique, vm_body, wait_for

from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.machine.api import Machine
from vmbmc_devcluster.emulator.harness import EmulatorThread

GIB = 1 << 30


def sizes(machine: Machine) -> dict[str, int | None]:
    return {d.name: d.size_bytes for d in machine.inventory().disks}


def add_claim(vm: dict[str, Any], disk: str, claim: str) -> None:
    spec = vm["spec"]["template"]["spec"]
    spec["domain"]["devices"]["disks"].append({"name": disk, "disk": {"bus": "virtio"}})
    spec["volumes"].append({"name": disk, "persistentVolumeClaim": {"claimName": claim}})


def pvc(name: str, size: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}


async def test_sizes_come_from_the_claims_and_follow_the_vm(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    store = emu.emulator.store
    pvcs = emu.emulator.registry.get("", "v1", "persistentvolumeclaims")
    vm = vm_body(name, cdrom=False)
    vm["spec"]["dataVolumeTemplates"] = [{"metadata": {"name": f"{name}-root"}, "spec": {
        "source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "12Gi"}}}}}]
    vm["spec"]["template"]["spec"]["volumes"] = [{"name": "rootdisk", "dataVolume": {"name": f"{name}-root"}}]
    add_claim(vm, "data", f"{name}-data")
    emu.call(store.create, pvcs, pvc(f"{name}-data", "5Gi"), "default")
    emu.call(store.create, cluster.vms, vm, "default")
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        machine = await hub.machine_for_vm("default", name, restricted=True)
        await wait_for(lambda: sizes(machine) == {"rootdisk": 12 * GIB, "data": 5 * GIB}, what="sizes")
        bound = emu.call(store.try_get, pvcs, "default", f"{name}-root")
        assert bound["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                                   "capacity": {"storage": "12Gi"}}  # fmt: skip
        # a disk added on another claim: read as soon as the VM names it
        emu.call(store.create, pvcs, pvc(f"{name}-more", "7Gi"), "default")
        emu.call(store.mutate, cluster.vms, "default", name, lambda o: add_claim(o, "more", f"{name}-more"))
        await wait_for(lambda: sizes(machine).get("more") == 7 * GIB, what="the new claim's size")
        assert sizes(machine)["data"] == 5 * GIB
    finally:
        await hub.close()
