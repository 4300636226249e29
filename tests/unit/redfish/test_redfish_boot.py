"""Boot override PATCH: sushy's minimal body, gofish's whole object, and every rejection."""

from __future__ import annotations

import pytest

from vmbmc.machine.types import BootMode, BootPersistence, BootTarget

SYSTEM = "/redfish/v1/Systems/vm1"


def code(r) -> str:
    return r.json()["error"]["code"].rsplit(".", 1)[1]


async def boot(client) -> dict:
    return (await client.get(SYSTEM)).json()["Boot"]


async def test_sushy_minimal_patch(client, machine) -> None:
    etag = (await client.get(SYSTEM)).headers["ETag"]
    body = {
        "Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once", "HttpBootUri": None}
    }
    r = await client.patch(SYSTEM, json=body, headers={"If-Match": etag})
    assert r.status_code == 204, r.text
    assert machine.boot_override().target is BootTarget.PXE
    got = await boot(client)
    assert (got["BootSourceOverrideTarget"], got["BootSourceOverrideEnabled"]) == ("Pxe", "Once")
    r = await client.patch(SYSTEM, json={"Boot": {"BootSourceOverrideMode": "UEFI"}})
    assert r.status_code == 204
    assert (await boot(client))["BootSourceOverrideMode"] == "UEFI"
    r = await client.patch(
        SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Continuous"}}
    )
    assert r.status_code == 204
    assert machine.boot_override().enabled is BootPersistence.CONTINUOUS
    assert machine.boot_override().mode is BootMode.UEFI


async def test_gofish_whole_object_patch(client, machine) -> None:
    whole = await boot(client)
    whole.update(
        {
            "BootSourceOverrideTarget": "Cd",
            "BootSourceOverrideEnabled": "Once",
            "BootSourceOverrideMode": "UEFI",
            "BootOrder": ["Boot0001"],
            "UefiTargetBootSourceOverride": "",
            "HttpBootUri": "",
            "BootNext": "",
            "AliasBootOrder": [],
            "@odata.type": "#ComputerSystem.v1_22_0.Boot",
        }
    )
    r = await client.patch(SYSTEM, json={"Boot": whole})
    assert r.status_code == 204, r.text
    assert machine.boot_override().target is BootTarget.CD
    assert machine.boot_override().mode is BootMode.UEFI


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Boot": {"BootSourceOverrideTarget": "Floppy"}}, "PropertyValueNotInList"),
        ({"Boot": {"BootSourceOverrideTarget": "UefiHttp"}}, "PropertyValueNotInList"),
        ({"Boot": {"BootSourceOverrideTarget": 3}}, "PropertyValueTypeError"),
        ({"Boot": {"BootSourceOverrideEnabled": "Always"}}, "PropertyValueNotInList"),
        ({"Boot": {"BootSourceOverrideMode": ["UEFI"]}}, "PropertyValueTypeError"),
        ({"Boot": {"Frobnicate": 1}}, "PropertyUnknown"),
        ({"Boot": "Pxe"}, "PropertyValueTypeError"),
        ({"Boot": {"HttpBootUri": "http://x/boot.efi"}}, "PropertyNotWritable"),
        ({"PowerState": "On"}, "PropertyNotWritable"),
        ({"AssetTag": "x"}, "PropertyUnknown"),
        ({}, "EmptyJSON"),
    ],
)
async def test_rejected_patches(client, machine, body, message) -> None:
    r = await client.patch(SYSTEM, json=body)
    assert r.status_code == 400, r.text
    assert code(r) == message
    assert machine.boot_calls == []


async def test_target_the_vm_cannot_honour(client, machine) -> None:
    from dataclasses import replace

    machine._inventory = replace(machine.inventory(), nics=())
    r = await client.patch(SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Pxe"}})
    assert r.status_code == 400 and code(r) == "PropertyValueNotInList"
    assert "Pxe" not in (await boot(client))["BootSourceOverrideTarget@Redfish.AllowableValues"]


async def test_malformed_json(client) -> None:
    r = await client.patch(SYSTEM, content=b'{"Boot": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and code(r) == "MalformedJSON"
    r = await client.patch(SYSTEM, content=b'["Boot"]', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and code(r) == "MalformedJSON"
    r = await client.patch(
        SYSTEM, content=b'{"Boot": {}, "Boot": {}}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and code(r) == "PropertyDuplicate"


async def test_if_match(client, machine) -> None:
    etag = (await client.get(SYSTEM)).headers["ETag"]
    patch = {"Boot": {"BootSourceOverrideTarget": "Pxe"}}
    r = await client.patch(SYSTEM, json=patch, headers={"If-Match": '"0000"'})
    assert r.status_code == 412 and code(r) == "PreconditionFailed"
    r = await client.patch(SYSTEM, json=patch, headers={"If-Match": "W/" + etag})
    assert r.status_code == 412, "a weak tag never matches If-Match"
    r = await client.patch(SYSTEM, json=patch, headers={"If-Match": etag})
    assert r.status_code == 204
    new_etag = (await client.get(SYSTEM)).headers["ETag"]
    assert new_etag != etag
    r = await client.patch(SYSTEM, json=patch, headers={"If-Match": etag})
    assert r.status_code == 412, "the old ETag is stale now"
    r = await client.patch(SYSTEM, json=patch, headers={"If-Match": "*"})
    assert r.status_code == 204
