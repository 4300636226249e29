"""The System's hardware as Ironic inspects it: EthernetInterfaces (MACs), Processors, SimpleStorage.

CD-ROMs are left out of SimpleStorage: Ironic picks a root disk from these sizes, and an ISO is
not one. A disk whose size is unknown is listed without `CapacityBytes`. No processor architecture
is reported: the VM spec does not say it, and a guess would be a lie.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.redfish.errors import RedfishError
from vmbmc.redfish.resources.base import collection, ok, resource, status
from vmbmc.redfish.resources.systems import resolve, system_path


async def ethernet_interfaces(request: Request) -> Response:
    inv = resolve(request)
    base = f"{system_path(inv)}/EthernetInterfaces"
    members = [f"{base}/{nic.name}" for nic in inv.nics]
    return ok(collection("EthernetInterfaceCollection", base, "Ethernet Interface Collection", members))


async def ethernet_interface(request: Request) -> Response:
    inv = resolve(request)
    nic_id = request.path_params["nic_id"]
    nic = next((n for n in inv.nics if n.name == nic_id), None)
    if nic is None:
        raise RedfishError(404, "ResourceNotFound", "EthernetInterface", nic_id)
    body = resource(
        "EthernetInterface", f"{system_path(inv)}/EthernetInterfaces/{nic.name}", nic.name, nic.name,
        Description=f"{nic.model} network interface" if nic.model else "network interface",
        InterfaceEnabled=True,
        Status=status(),
    )
    if nic.mac:
        body["MACAddress"] = nic.mac
    return ok(body)


# KubeVirt architecture → Redfish ProcessorArchitecture and InstructionSet (Ironic's profile needs the former)
_ARCHITECTURES = {
    "amd64": {"ProcessorArchitecture": "x86", "InstructionSet": "x86-64"},
    "arm64": {"ProcessorArchitecture": "ARM", "InstructionSet": "ARM-A64"},
    "ppc64le": {"ProcessorArchitecture": "Power", "InstructionSet": "PowerISA"},
    "s390x": {"ProcessorArchitecture": "OEM", "InstructionSet": "OEM"},
}


async def processors(request: Request) -> Response:
    inv = resolve(request)
    base = f"{system_path(inv)}/Processors"
    return ok(collection("ProcessorCollection", base, "Processor Collection", [f"{base}/1"]))


async def processor(request: Request) -> Response:
    inv = resolve(request)
    if request.path_params["processor_id"] != "1":
        raise RedfishError(404, "ResourceNotFound", "Processor", request.path_params["processor_id"])
    body = resource(
        "Processor", f"{system_path(inv)}/Processors/1", "1", "Virtual CPUs",
        Description="The VM's virtual CPUs",
        ProcessorType="CPU",
        **_ARCHITECTURES.get(inv.architecture, {"ProcessorArchitecture": "OEM"}),
        TotalCores=inv.cpus,
        TotalThreads=inv.cpus,
        Status=status(),
    )
    return ok(body)


async def simple_storage_collection(request: Request) -> Response:
    inv = resolve(request)
    base = f"{system_path(inv)}/SimpleStorage"
    return ok(collection("SimpleStorageCollection", base, "Simple Storage Collection", [f"{base}/1"]))


async def simple_storage(request: Request) -> Response:
    inv = resolve(request)
    if request.path_params["storage_id"] != "1":
        raise RedfishError(404, "ResourceNotFound", "SimpleStorage", request.path_params["storage_id"])
    devices = []
    for disk in inv.disks:
        if disk.kind == "cdrom":
            continue
        device: dict[str, object] = {"Name": disk.name, "Status": status()}
        if disk.size_bytes is not None:
            device["CapacityBytes"] = disk.size_bytes
        devices.append(device)
    body = resource(
        "SimpleStorage", f"{system_path(inv)}/SimpleStorage/1", "1", "Virtual disks",
        Description="The VM's disks and LUNs",
        Devices=devices,
        Status=status(),
    )
    return ok(body)
