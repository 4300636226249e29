"""Where the tests read DMTF's Redfish CSDL: the copy in tests/data/redfish-csdl, or $REDFISH_CSDL; and
what the schemas say a property may be (nullable or not)."""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from pathlib import Path

CSDL = Path(os.environ.get("REDFISH_CSDL") or Path(__file__).parent / "data" / "redfish-csdl")
_EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


@functools.cache
def nullable_properties(resource: str) -> frozenset[str]:
    """The properties of the resource type `resource` (for example "VirtualMedia"), in any version of
    its schema, that DMTF's CSDL lets be null (a Property without Nullable="false")."""
    root = ET.parse(CSDL / f"{resource}_v1.xml").getroot()
    found = set()
    for entity in root.iter(f"{_EDM}EntityType"):
        if entity.get("Name") != resource:
            continue
        for prop in entity.findall(f"{_EDM}Property"):
            if prop.get("Nullable") != "false":
                found.add(str(prop.get("Name")))
    return frozenset(found)
