"""The BMC's SDR repository (IPMI 2.0 §33, §43): its own Management Controller locator and one event-only
sensor record per sensor the SEL names, so `ipmitool sel elist` and FreeIPMI's `ipmi-sel` name them.

A SEL record names its sensor by generator id, sensor number and sensor type; both tools look for an SDR
whose owner id is the generator id (`ipmi_sdr_find_sdr_bynumtype`, `ipmi_sdr_cache_search_sensor`). The
generator tells who caused the entry (vmbmc.machine.history.Origin): a remote console's software id for
requests over IPMI or Redfish, the BMC (20h) for the kbmc's own, system management software for causes
outside the BMC. Each origin owns the sensors its entries can name.

The repository never changes while a BMC runs, and its timestamps are fixed: FreeIPMI keeps an SDR cache
per host and refuses one whose timestamps differ ("out of date"). Change `ADDED` when the records change.
"""

from __future__ import annotations

import datetime
import enum
import struct
from dataclasses import dataclass

from vmbmc.machine.history import Origin

SDR_VERSION = 0x51
MC_LOCATOR, EVENT_ONLY = 0x12, 0x03
BMC_ADDRESS = 0x20
SENSOR_SPECIFIC = 0x6F  # event/reading type: the sensor type's own offsets
ENTITY_CHASSIS = 0x17  # system chassis: what powers on, restarts, is reconfigured
ENTITY_MANAGEMENT = 0x06  # system management module: the BMC and its log
# When this repository's layout last changed (Get SDR Repository Info: most recent addition).
ADDED = int(datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC).timestamp())
NEVER = 0xFFFFFFFF  # "unspecified" timestamp: nothing was ever erased
# A generator id / sensor owner id: bits 7:1 the IPMB address or software id, bit 0 set for software
# (IPMI 2.0 §5.5): remote console software 1 and 2 (ids 40h, 41h), system management software (20h).
GENERATORS: dict[Origin, int] = {
    Origin.IPMI: 0x40 << 1 | 1,
    Origin.REDFISH: 0x41 << 1 | 1,
    Origin.KBMC: BMC_ADDRESS,
    Origin.EXTERNAL: 0x20 << 1 | 1,
}
_WHO = {Origin.IPMI: "IPMI", Origin.REDFISH: "Redfish", Origin.KBMC: "BMC", Origin.EXTERNAL: "External"}


class Kind(enum.Enum):
    """The sensors of the history: (sensor number, sensor type, entity, name)."""

    POWER = (0x01, 0x22, ENTITY_CHASSIS, "Power")  # System ACPI Power State
    RESTART = (0x02, 0x1D, ENTITY_CHASSIS, "Restart")  # System Boot / Restart Initiated
    BOOT = (0x03, 0x12, ENTITY_CHASSIS, "Boot")  # System Event: system reconfigured
    LOG = (0x04, 0x10, ENTITY_MANAGEMENT, "Log")  # Event Logging Disabled: log area reset/cleared

    @property
    def number(self) -> int:
        return int(self.value[0])

    @property
    def sensor_type(self) -> int:
        return int(self.value[1])


# What each origin can cause: the kbmc's own requests only put a boot order back; nothing outside the BMC
# clears its log.
KINDS: dict[Origin, tuple[Kind, ...]] = {
    Origin.IPMI: (Kind.POWER, Kind.RESTART, Kind.BOOT, Kind.LOG),
    Origin.REDFISH: (Kind.POWER, Kind.RESTART, Kind.BOOT, Kind.LOG),
    Origin.KBMC: (Kind.BOOT,),
    Origin.EXTERNAL: (Kind.POWER, Kind.RESTART, Kind.BOOT),
}


@dataclass(frozen=True, slots=True)
class Sensor:
    owner: int
    kind: Kind

    @property
    def name(self) -> str:
        return f"{_WHO[_origin(self.owner)]} {self.kind.value[3]}"[:16]


def _origin(owner: int) -> Origin:
    return next(o for o, g in GENERATORS.items() if g == owner)


SENSORS = tuple(Sensor(GENERATORS[origin], kind) for origin, kinds in KINDS.items() for kind in kinds)


def _id_string(text: str) -> bytes:
    raw = text.encode("ascii", "replace")[:16]
    return bytes((0xC0 | len(raw),)) + raw  # type/length: 8-bit ASCII + Latin 1


def _record(record_id: int, record_type: int, body: bytes) -> bytes:
    return struct.pack("<HBBB", record_id, SDR_VERSION, record_type, len(body)) + body


def mc_locator(record_id: int, name: str) -> bytes:
    """Type 12h, Management Controller Device Locator (§43.9): the BMC at 20h on the primary channel;
    a chassis device with a FRU inventory, a SEL, this SDR repository and sensors."""
    body = bytes((BMC_ADDRESS, 0x00, 0x00, 0x8F, 0, 0, 0, ENTITY_MANAGEMENT, 0x01, 0x00)) + _id_string(name)
    return _record(record_id, MC_LOCATOR, body)


def event_only(record_id: int, sensor: Sensor) -> bytes:
    """Type 03h, Event-Only Sensor (§43.3): no reading, only the events it logs."""
    body = (
        bytes((sensor.owner, 0x00, sensor.kind.number, sensor.kind.value[2], 0x01))
        + bytes((sensor.kind.sensor_type, SENSOR_SPECIFIC, 0x00, 0x00, 0x00, 0x00))
        + _id_string(sensor.name)
    )
    return _record(record_id, EVENT_ONLY, body)


def repository(mc_name: str) -> tuple[bytes, ...]:
    """Every record, record ids 1, 2, … (0000h asks for the first, FFFFh for the last)."""
    return (mc_locator(1, mc_name), *(event_only(i, s) for i, s in enumerate(SENSORS, start=2)))


def repository_info(count: int) -> bytes:
    """Get SDR Repository Info (§33.9): version, records, no free space (read only), fixed timestamps,
    Reserve supported."""
    return struct.pack("<BHHIIB", SDR_VERSION, count, 0, ADDED, NEVER, 0x02)


def get_sdr(records: tuple[bytes, ...], record_id: int, offset: int, count: int) -> tuple[int, bytes] | None:
    """(next record id, the bytes asked for) of Get SDR (§33.12); None when there is no such record. A
    count of FFh reads to the end."""
    index = 0 if record_id == 0 else len(records) - 1 if record_id == 0xFFFF else record_id - 1
    if not 0 <= index < len(records):
        return None
    following = index + 2 if index + 1 < len(records) else 0xFFFF
    return following, records[index][offset : offset + (len(records[index]) if count == 0xFF else count)]
