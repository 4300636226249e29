"""Every resource: reachable from the root, well-formed, no nulls, no dangling links, right headers."""

from __future__ import annotations

import re
from typing import Any

import httpx

ODATA_ID = "@odata.id"


def _links(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == ODATA_ID and isinstance(item, str):
                found.append(item)
            else:
                found.extend(_links(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_links(item))
    return found


def _nulls(value: Any, path: str = "") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}/{i}")]
    return []


async def crawl(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    todo = ["/redfish/v1"]
    while todo and len(seen) < 200:
        uri = todo.pop()
        if uri in seen:
            continue
        r = await client.get(uri)
        assert r.status_code == 200, f"{uri} -> {r.status_code}: dangling link"
        seen[uri] = r.json()
        todo.extend(u for u in _links(seen[uri]) if u not in seen)
    return seen


async def test_every_resource_is_well_formed(client: httpx.AsyncClient) -> None:
    resources = await crawl(client)
    assert len(resources) >= 25
    for uri, body in resources.items():
        assert body[ODATA_ID] == uri
        assert re.fullmatch(r"#\w+(\.v\d+_\d+_\d+)?\.\w+", body["@odata.type"]), uri
        assert body["Name"], uri
        if "Collection." not in body["@odata.type"]:
            assert body["Id"], uri
        else:
            assert body["Members@odata.count"] == len(body["Members"])
        assert _nulls(body) == [], f"{uri} has JSON nulls"


async def test_headers_on_get(client: httpx.AsyncClient) -> None:
    r = await client.get("/redfish/v1/Systems/vm1")
    assert r.headers["OData-Version"] == "4.0"
    assert r.headers["Content-Type"].startswith("application/json")
    assert re.fullmatch(r'"[0-9a-f]+"', r.headers["ETag"]), "strong, quoted ETag"
    assert "rel=describedby" in r.headers["Link"]
    assert set(r.headers["Allow"].split(", ")) == {"GET", "HEAD", "PATCH"}
    again = await client.get("/redfish/v1/Systems/vm1", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


async def test_service_root_without_credentials(anon: httpx.AsyncClient) -> None:
    for uri in ("/redfish/v1", "/redfish/v1/", "/redfish", "/redfish/v1/odata", "/redfish/v1/$metadata"):
        r = await anon.get(uri)
        assert r.status_code == 200, uri
    root = (await anon.get("/redfish/v1/")).json()
    assert root["Links"]["Sessions"] == {ODATA_ID: "/redfish/v1/SessionService/Sessions"}
    assert (await anon.get("/redfish/v1/Systems")).status_code == 401


async def test_system_content(client: httpx.AsyncClient) -> None:
    system = (await client.get("/redfish/v1/Systems/vm1")).json()
    assert system["PowerState"] == "Off"
    assert system["UUID"] == "5f4c6c5e-1a1b-4c2d-9e8f-0123456789ab"
    assert system["Manufacturer"] == "KubeVirt"
    assert system["MemorySummary"]["TotalSystemMemoryGiB"] == 4
    assert system["ProcessorSummary"]["Count"] == 2
    assert system["Links"]["ManagedBy"] == [{ODATA_ID: "/redfish/v1/Managers/BMC"}]
    assert system["Links"]["Chassis"] == [{ODATA_ID: "/redfish/v1/Chassis/1"}]
    allowed = system["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
    assert allowed == [
        "On",
        "ForceOn",
        "ForceOff",
        "GracefulShutdown",
        "GracefulRestart",
        "ForceRestart",
        "PowerCycle",
        "Pause",
        "Resume",
    ]
    assert "VirtualMedia" not in system, "VirtualMedia is advertised only where the machine has media"


async def test_inventory(client: httpx.AsyncClient) -> None:
    nics = (await client.get("/redfish/v1/Systems/vm1/EthernetInterfaces")).json()
    macs = [(await client.get(m[ODATA_ID])).json()["MACAddress"] for m in nics["Members"]]
    assert macs == ["52:54:00:12:34:56", "52:54:00:ab:cd:ef"]
    storage = (await client.get("/redfish/v1/Systems/vm1/SimpleStorage/1")).json()
    assert storage["Devices"] == [
        {"Name": "rootdisk", "Status": {"State": "Enabled", "Health": "OK"}, "CapacityBytes": 20 << 30},
        {"Name": "scratch", "Status": {"State": "Enabled", "Health": "OK"}},
    ]
    cpu = (await client.get("/redfish/v1/Systems/vm1/Processors/1")).json()
    assert cpu["TotalThreads"] == 2


async def test_manager_and_chassis(client: httpx.AsyncClient, machine) -> None:
    manager = (await client.get("/redfish/v1/Managers/BMC")).json()
    assert manager["ManagerType"] == "BMC"
    assert manager["FirmwareVersion"] == "9.9.9"
    assert manager["Links"]["ManagerForServers"] == [{ODATA_ID: "/redfish/v1/Systems/vm1"}]
    proto = (await client.get("/redfish/v1/Managers/BMC/NetworkProtocol")).json()
    assert proto["IPMI"] == {"ProtocolEnabled": True, "Port": 10623}
    assert proto["HTTPS"] == {"ProtocolEnabled": True, "Port": 8443}
    assert proto["HTTP"] == {"ProtocolEnabled": False}
    from vmbmc.machine.types import PowerState

    machine.set_state(PowerState.POWERING_ON)
    chassis = (await client.get("/redfish/v1/Chassis/1")).json()
    assert chassis["PowerState"] == "PoweringOn"
    assert chassis["Links"]["ComputerSystems"] == [{ODATA_ID: "/redfish/v1/Systems/vm1"}]


async def test_unknown_power_state_is_left_out(client: httpx.AsyncClient, machine) -> None:
    from vmbmc.machine.types import PowerState

    machine.set_state(PowerState.UNKNOWN)
    machine.stale = True
    system = (await client.get("/redfish/v1/Systems/vm1")).json()
    assert "PowerState" not in system
    assert system["Status"]["Health"] == "Warning"


async def test_uuid_redirects_to_name(client: httpx.AsyncClient) -> None:
    r = await client.get("/redfish/v1/Systems/5f4c6c5e-1a1b-4c2d-9e8f-0123456789ab/EthernetInterfaces")
    assert r.status_code == 307
    assert r.headers["Location"].endswith("/redfish/v1/Systems/vm1/EthernetInterfaces")


async def test_vm_gone(client: httpx.AsyncClient, machine) -> None:
    machine.remove_vm()
    assert (await client.get("/redfish/v1/Systems")).json()["Members"] == []
    r = await client.get("/redfish/v1/Systems/vm1")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "Base.1.16.0.ResourceNotFound"
    assert (await client.get("/redfish/v1/Managers/BMC")).status_code == 200


async def test_registry_served(client: httpx.AsyncClient) -> None:
    file = (await client.get("/redfish/v1/Registries/Base")).json()
    registry = (await client.get(file["Location"][0]["Uri"])).json()
    assert registry["Id"] == "Base.1.16.0"
    assert "PropertyValueNotInList" in registry["Messages"]


async def test_metadata_references_every_type(client: httpx.AsyncClient) -> None:
    resources = await crawl(client)
    metadata = (await client.get("/redfish/v1/$metadata")).text
    for body in resources.values():
        namespace = body["@odata.type"].lstrip("#").rsplit(".", 1)[0]
        assert f'Namespace="{namespace}"' in metadata, namespace
