"""The FRU inventory image of a VM (Platform Management FRU Information Storage Definition v1.0),
so `ipmitool fru print` shows who the machine is: VM name, namespace and UUID."""

from __future__ import annotations

from vmbmc.machine.types import Inventory

MANUFACTURER = "KubeVirt"
END_OF_FIELDS = 0xC1


def _field(text: str) -> bytes:
    raw = text.encode("ascii", "replace")[:63]
    return bytes((0xC0 | len(raw),)) + raw  # type/length: 8-bit ASCII


def _area(body: bytes) -> bytes:
    """Close an area: end marker, pad to a multiple of 8 with room for the checksum, length byte."""
    body += bytes((END_OF_FIELDS,))
    total = -(-(len(body) + 1) // 8) * 8
    body += bytes(total - len(body) - 1)
    body = body[:1] + bytes((total // 8,)) + body[2:]
    return body + bytes((-sum(body) & 0xFF,))


def image(inv: Inventory, version: str) -> bytes:
    """Common header, chassis info area and product info area."""
    chassis = _area(
        bytes((0x01, 0x00, 0x01))  # format version, length (filled in), type "Other"
        + _field(f"{inv.namespace}/{inv.name}")  # part number
        + _field(inv.uuid)  # serial number
    )
    product = _area(
        bytes((0x01, 0x00, 0x00))  # format version, length (filled in), language English
        + _field(MANUFACTURER)
        + _field(inv.name)  # product name
        + _field(inv.namespace)  # part/model number
        + _field(version)
        + _field(inv.uuid)  # serial number
        + _field(f"{inv.namespace}/{inv.name}")  # asset tag
        + _field("")  # FRU file id
    )
    chassis_off = 1  # in multiples of 8 bytes, right after the 8-byte header
    product_off = chassis_off + len(chassis) // 8
    header = bytes((0x01, 0, chassis_off, 0, product_off, 0, 0))
    header += bytes((-sum(header) & 0xFF,))
    return header + chassis + product
