"""What we serve against DMTF's published CSDL (the copy in tests/data/redfish-csdl) and Base registry."""

from __future__ import annotations

import re
import ssl
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.redfish_csdl import CSDL
from vmbmc.redfish.boot import BOOT_PROPERTIES
from vmbmc.redfish.power import DMTF_RESET_TYPES, RESET_TYPES
from vmbmc.redfish.registry import base_registry, message
from vmbmc.redfish.schemas import VERSIONS, metadata_xml
from vmbmc.redfish.tls import self_signed_certificate


def _enum(schema: str, name: str) -> list[str]:
    text = (CSDL / f"{schema}_v1.xml").read_text()
    body = re.search(rf'<EnumType Name="{name}">(.*?)</EnumType>', text, re.S)
    assert body, f"{schema}.{name} not found"
    return re.findall(r'<Member Name="(\w+)"', body.group(1))


def test_every_served_namespace_exists_in_dmtf_csdl() -> None:
    for schema, version in VERSIONS.items():
        text = (CSDL / f"{schema}_v1.xml").read_text()
        namespace = f"{schema}.{version}" if version else schema
        assert f'Namespace="{namespace}"' in text, namespace


def test_reset_types_match_dmtf_enum() -> None:
    assert list(DMTF_RESET_TYPES) == _enum("Resource", "ResetType")
    assert set(RESET_TYPES) <= set(DMTF_RESET_TYPES)
    assert "Nmi" not in RESET_TYPES, "Nmi is not offered (IPMI power diag has no KubeVirt call)"


def test_boot_properties_match_dmtf_boot_type() -> None:
    text = (CSDL / "ComputerSystem_v1.xml").read_text()
    names: set[str] = set()
    for body in re.findall(r'<ComplexType Name="Boot"[^>]*>(.*?)</ComplexType>', text, re.S):
        names |= set(re.findall(r'(?:Navigation)?Property Name="(\w+)"', body))
    assert names == BOOT_PROPERTIES


def test_power_and_boot_values_are_dmtf_enums() -> None:
    from vmbmc.machine.types import BootMode, BootPersistence, BootTarget, PowerState

    assert {t.value for t in BootTarget} <= set(_enum("ComputerSystem", "BootSource"))
    assert {p.value for p in BootPersistence} <= set(_enum("ComputerSystem", "BootSourceOverrideEnabled"))
    assert {m.value for m in BootMode} <= set(_enum("ComputerSystem", "BootSourceOverrideMode"))
    assert {s.value for s in PowerState} - set(_enum("Resource", "PowerState")) == {"Unknown"}


def test_metadata_is_xml_with_entity_container() -> None:
    root = ET.fromstring(metadata_xml())
    ns = {
        "edmx": "http://docs.oasis-open.org/odata/ns/edmx",
        "edm": "http://docs.oasis-open.org/odata/ns/edm",
    }
    assert root.findall(".//edm:EntityContainer", ns)
    uris = [r.get("Uri") for r in root.findall("edmx:Reference", ns)]
    assert all(u.startswith("http://redfish.dmtf.org/schemas/v1/") for u in uris)


def test_registry_messages_are_consistent() -> None:
    registry = base_registry()
    for message_id, entry in registry["Messages"].items():
        assert entry["NumberOfArgs"] == len(entry.get("ParamTypes", [])), message_id
        text = message(message_id, *["x"] * entry["NumberOfArgs"])["Message"]
        assert "%" not in text, message_id
    with pytest.raises(ValueError):
        message("PropertyUnknown")


def test_self_signed_certificate_loads(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(names=("bmc.example",), directory=tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
