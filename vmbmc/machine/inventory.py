"""Inventory of a VM for both protocols (Redfish ComputerSystem, IPMI FRU and GUID), from its spec.

Pure: the VM dict, its VMI (for MACs KubeVirt or the network plug-in assigned) and, when the caller has
read them, the PersistentVolumeClaims and DataVolumes its disks name (for disk sizes, `disk_claims`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from vmbmc.machine.boot import boot_mode
from vmbmc.machine.observe import run_strategy
from vmbmc.machine.quantity import parse_quantity as parse_k8s_quantity
from vmbmc.machine.types import Disk, Inventory, Nic


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource.Quantity ("4Gi", "500m", "1e3", 2) as a number; None when malformed."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return parse_k8s_quantity(value)
    except (ValueError, TypeError, InvalidOperation):
        return None


def _int_quantity(value: Any) -> int | None:
    q = parse_quantity(value)
    return None if q is None else math.ceil(q)


def _template_spec(vm: dict[str, Any]) -> dict[str, Any]:
    return ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}


def _resource(domain: dict[str, Any], name: str) -> Any:
    res = domain.get("resources") or {}
    return (res.get("requests") or {}).get(name) or (res.get("limits") or {}).get(name)


def cpus(domain: dict[str, Any]) -> int:
    cpu = domain.get("cpu")
    if cpu and any(k in cpu for k in ("cores", "sockets", "threads")):
        return int(cpu.get("cores") or 1) * int(cpu.get("sockets") or 1) * int(cpu.get("threads") or 1)
    return max(1, _int_quantity(_resource(domain, "cpu")) or 1)


def memory_bytes(domain: dict[str, Any]) -> int:
    guest = (domain.get("memory") or {}).get("guest")
    return _int_quantity(guest) or _int_quantity(_resource(domain, "memory")) or 0


def _requested(spec: dict[str, Any]) -> int | None:
    """The storage a PVC spec, or a DataVolume's `storage`/`pvc` part, asks for."""
    return _int_quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage"))


def _dv_request(dv: dict[str, Any]) -> int | None:
    spec = dv.get("spec") or {}
    return _requested(spec.get("storage") or spec.get("pvc") or {})


def _volume_claim(volume: dict[str, Any]) -> tuple[str, bool]:
    """The PVC a volume reads (a DataVolume's PVC has the DataVolume's name), and whether it is a
    DataVolume; ("", False) for any other volume type."""
    if "dataVolume" in volume:
        return str((volume["dataVolume"] or {}).get("name") or ""), True
    if "persistentVolumeClaim" in volume:
        return str((volume["persistentVolumeClaim"] or {}).get("claimName") or ""), False
    return "", False


def disk_claims(vm: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The PersistentVolumeClaims and the DataVolumes whose sizes the VM's disks report (CD-ROMs left
    out: they are never a root disk), sorted: what a kbmc reads by name, and its Role names."""
    tspec = _template_spec(vm)
    cdroms = {d.get("name") for d in ((tspec.get("domain") or {}).get("devices") or {}).get("disks") or []
              if "cdrom" in d}
    pvcs, dvs = set(), set()
    for volume in tspec.get("volumes") or []:
        if volume.get("name") in cdroms:
            continue
        claim, is_dv = _volume_claim(volume)
        if claim:
            pvcs.add(claim)
            if is_dv:
                dvs.add(claim)
    return tuple(sorted(pvcs)), tuple(sorted(dvs))


def _disk_size(
    volume: dict[str, Any] | None,
    vm: dict[str, Any],
    pvcs: Mapping[str, dict[str, Any]],
    dvs: Mapping[str, dict[str, Any]],
) -> int | None:
    """The most truthful size known: what Kubernetes allocated (the PVC's `status.capacity`, which a
    provisioner may round up), else what the PVC, its DataVolume or the VM's DataVolume template ask
    for. A containerDisk has none: its image's virtual size is in no API object."""
    if volume is None:
        return None
    if "emptyDisk" in volume:
        return _int_quantity((volume["emptyDisk"] or {}).get("capacity"))
    claim, is_dv = _volume_claim(volume)
    if not claim:
        return None
    pvc = pvcs.get(claim)
    if pvc is not None:
        capacity = _int_quantity(((pvc.get("status") or {}).get("capacity") or {}).get("storage"))
        if capacity or _requested(pvc.get("spec") or {}):
            return capacity or _requested(pvc.get("spec") or {})
    if not is_dv:
        return None
    dv = dvs.get(claim)
    if dv is not None and _dv_request(dv):
        return _dv_request(dv)
    for template in (vm.get("spec") or {}).get("dataVolumeTemplates") or []:
        if (template.get("metadata") or {}).get("name") == claim:
            return _dv_request(template)
    return None


def inventory(
    vm: dict[str, Any],
    vmi: dict[str, Any] | None = None,
    pvcs: Mapping[str, dict[str, Any]] | None = None,
    dvs: Mapping[str, dict[str, Any]] | None = None,
) -> Inventory:
    meta = vm.get("metadata") or {}
    tspec = _template_spec(vm)
    domain = tspec.get("domain") or {}
    devs = domain.get("devices") or {}
    vmi_macs = {
        i.get("name"): i.get("mac") or ""
        for i in ((vmi or {}).get("status") or {}).get("interfaces") or []
        if i.get("name")
    }
    nics = tuple(
        Nic(
            name=str(i.get("name", "")),
            mac=str(i.get("macAddress") or vmi_macs.get(i.get("name")) or "").lower(),
            model=str(i.get("model") or "virtio"),
        )
        for i in devs.get("interfaces") or []
    )
    volumes = {v.get("name"): v for v in tspec.get("volumes") or []}
    disks = []
    for d in devs.get("disks") or []:
        kind = "cdrom" if "cdrom" in d else "lun" if "lun" in d else "disk"
        kind_spec = d.get(kind) or d.get("floppy") or {}
        bus = kind_spec.get("bus", "") if isinstance(kind_spec, dict) else ""
        disks.append(
            Disk(
                name=str(d.get("name", "")),
                kind=kind,
                size_bytes=_disk_size(volumes.get(d.get("name")), vm, pvcs or {}, dvs or {}),
                bus=str(bus or ""),
            )
        )
    return Inventory(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uuid=str((domain.get("firmware") or {}).get("uuid") or meta.get("uid") or ""),
        cpus=cpus(domain),
        memory_bytes=memory_bytes(domain),
        nics=nics,
        disks=tuple(disks),
        boot_mode=boot_mode(vm),
        run_strategy=run_strategy(vm),
        # KubeVirt's spec.architecture; without it the cluster's default (amd64 on every cluster we know)
        architecture=str(tspec.get("architecture") or ((vmi or {}).get("spec") or {}).get("architecture")
                         or "amd64"),
    )
