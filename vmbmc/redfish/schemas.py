"""Which DMTF schema versions vmbmc serves: `@odata.type` values and the `$metadata` document.

Every resource's `@odata.type` is built here, and `$metadata` references exactly these schemas at
DMTF's URIs (we never write or edit CSDL ourselves). A unit test checks that each versioned
namespace exists in DMTF's published CSDL.
"""

from __future__ import annotations

import functools
from xml.sax.saxutils import quoteattr

#: schema name -> version of the namespace we implement; None for the unversioned collections
VERSIONS: dict[str, str | None] = {
    "ServiceRoot": "v1_17_0",
    "ComputerSystem": "v1_22_0",
    "ComputerSystemCollection": None,
    "EthernetInterface": "v1_12_0",
    "EthernetInterfaceCollection": None,
    "SimpleStorage": "v1_3_1",
    "SimpleStorageCollection": None,
    "Processor": "v1_20_0",
    "ProcessorCollection": None,
    "VirtualMedia": "v1_6_5",
    "VirtualMediaCollection": None,
    "Manager": "v1_19_0",
    "ManagerCollection": None,
    "ManagerNetworkProtocol": "v1_10_0",
    "Chassis": "v1_25_0",
    "ChassisCollection": None,
    "AccountService": "v1_15_0",
    "ManagerAccount": "v1_12_0",
    "ManagerAccountCollection": None,
    "Role": "v1_3_2",
    "RoleCollection": None,
    "SessionService": "v1_1_9",
    "Session": "v1_7_0",
    "SessionCollection": None,
    "Bios": "v1_2_3",
    "SecureBoot": "v1_1_2",
    "Settings": "v1_4_0",
    "AttributeRegistry": "v1_3_9",
    "LogService": "v1_9_0",
    "LogServiceCollection": None,
    "LogEntry": "v1_21_0",
    "LogEntryCollection": None,
    "MessageRegistryFile": "v1_1_4",
    "MessageRegistryFileCollection": None,
    "Message": "v1_2_0",
    "EventService": "v1_12_0",
    "EventDestination": "v1_16_0",
    "EventDestinationCollection": None,
    "Event": "v1_13_0",
}

#: schemas referenced by the types above (common types) that $metadata must also name
_SUPPORT = ("Resource", "RedfishExtensions")

_DMTF = "http://redfish.dmtf.org/schemas/v1"


def odata_type(schema: str, type_name: str = "") -> str:
    """`#ComputerSystem.v1_22_0.ComputerSystem`, or `#ComputerSystemCollection.ComputerSystemCollection`;
    `type_name` names another type of the schema (`#Settings.v1_4_0.PreferredApplyTime`)."""
    version, name = VERSIONS[schema], type_name or schema
    return f"#{schema}.{version}.{name}" if version else f"#{schema}.{name}"


@functools.cache
def metadata_xml() -> bytes:
    """The service's `$metadata`: references to DMTF's CSDL for every namespace we use."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">',
    ]
    for schema, version in VERSIONS.items():
        lines.append(f"  <edmx:Reference Uri={quoteattr(f'{_DMTF}/{schema}_v1.xml')}>")
        lines.append(f'    <edmx:Include Namespace="{schema}"/>')
        if version:
            lines.append(f'    <edmx:Include Namespace="{schema}.{version}"/>')
        lines.append("  </edmx:Reference>")
    for schema in _SUPPORT:
        lines.append(f"  <edmx:Reference Uri={quoteattr(f'{_DMTF}/{schema}_v1.xml')}>")
        if schema == "RedfishExtensions":
            lines.append('    <edmx:Include Namespace="RedfishExtensions.v1_0_0" Alias="Redfish"/>')
        else:
            lines.append(f'    <edmx:Include Namespace="{schema}"/>')
            lines.append(f'    <edmx:Include Namespace="{schema}.v1_0_0"/>')
        lines.append("  </edmx:Reference>")
    root = f"ServiceRoot.{VERSIONS['ServiceRoot']}"
    lines += [
        "  <edmx:DataServices>",
        '    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">',
        f'      <EntityContainer Name="Service" Extends="{root}.ServiceContainer"/>',
        "    </Schema>",
        "  </edmx:DataServices>",
        "</edmx:Edmx>",
    ]
    return ("\n".join(lines) + "\n").encode()
