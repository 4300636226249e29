"""SecureBoot and Bios where the back end has no firmware settings (the test double): not advertised, and
their URIs answer 404. The resources themselves run against the real kbmc in
tests/integration/kbmc/test_kbmc_firmware.py."""

from __future__ import annotations

import httpx

from vmbmc.redfish import bios
from vmbmc.redfish.schemas import metadata_xml

SYSTEM = "/redfish/v1/Systems/vm1"


async def test_not_advertised_without_firmware_settings(client: httpx.AsyncClient) -> None:
    system = (await client.get(SYSTEM)).json()
    assert "Bios" not in system and "SecureBoot" not in system
    registries = (await client.get("/redfish/v1/Registries")).json()
    members = [m["@odata.id"] for m in registries["Members"]]
    assert "/redfish/v1/Registries/Base" in members
    assert f"/redfish/v1/Registries/{bios.REGISTRY_ID}" not in members
    for uri in (f"{SYSTEM}/SecureBoot", f"{SYSTEM}/Bios", f"{SYSTEM}/Bios/Settings",
                f"/redfish/v1/Registries/{bios.REGISTRY_ID}"):
        assert (await client.get(uri)).status_code == 404, uri
    patch = await client.patch(f"{SYSTEM}/SecureBoot", json={"SecureBootEnable": True})
    assert patch.status_code == 404


def test_metadata_names_the_firmware_schemas() -> None:
    text = metadata_xml().decode()
    for namespace in ("Bios.v1_2_3", "SecureBoot.v1_1_2", "Settings.v1_4_0", "AttributeRegistry.v1_3_9"):
        assert f'Namespace="{namespace}"' in text, namespace
