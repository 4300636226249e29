"""The BMC's System Event Log (IPMI 2.0 §31, §32): the power history (vmbmc.machine.history) as standard
system event records, read from the machine on every command (nothing is kept in the process).

Each entry is one 16-byte record: sensor type 22h (ACPI power state: S0/G0 working, S1 paused, S5/G2
soft-off), 1Dh offset 07h (system restart), 12h offset 00h (system reconfigured: the boot device) or 10h
offset 02h (log area reset/cleared); the generator id and sensor name who caused it (vmbmc.kbmc.sdr);
event data 2-3 the first four hex digits of the transition's id (a clear's: of its request id), marked
as OEM data. The record id is those same four digits (moved to the next free id in the rare case two
visible entries share them), so it is the same in every kbmc process, before and after a restart.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmbmc.kbmc.sdr import GENERATORS, NEVER, Kind
from vmbmc.machine.history import LogEntry, LogView, Reason

SEL_VERSION = 0x51
RECORD_SIZE = 16
SYSTEM_EVENT_RECORD = 0x02
EVM_REV = 0x04  # IPMI 2.0 event messages
SENSOR_SPECIFIC = 0x6F
OEM_DATA_2_3 = 0xA0  # event data 1 bits 7:4: OEM codes in event data 2 and 3
RESERVE_SUPPORTED, OVERFLOW = 0x02, 0x80
FIRST, LAST = 0x0000, 0xFFFF

# reason -> (sensor, offset)
EVENTS: dict[Reason, tuple[Kind, int]] = {
    Reason.POWERED_ON: (Kind.POWER, 0x00),  # S0/G0: working
    Reason.RESUMED: (Kind.POWER, 0x00),
    Reason.PAUSED: (Kind.POWER, 0x01),  # S1: sleeping, processor context kept (as a paused VM's)
    Reason.POWERED_OFF: (Kind.POWER, 0x05),  # S5/G2: soft-off
    Reason.RESTARTED: (Kind.RESTART, 0x07),  # system restart
    Reason.BOOT_DEVICE_CHANGED: (Kind.BOOT, 0x00),  # system reconfigured
    Reason.LOG_CLEARED: (Kind.LOG, 0x02),  # log area reset/cleared
}


def _timestamp(entry: LogEntry) -> int:
    return int(entry.time.timestamp()) & 0xFFFFFFFF


def record(record_id: int, entry: LogEntry) -> bytes:
    """One system event record (§32.1)."""
    kind, offset = EVENTS[entry.reason]
    short = entry.short_id
    return struct.pack(
        "<HBIHBBBBBBB",
        record_id,
        SYSTEM_EVENT_RECORD,
        _timestamp(entry),
        GENERATORS[entry.origin],  # byte 2 (channel 0, LUN 0) is the high byte
        EVM_REV,
        kind.sensor_type,
        kind.number,
        SENSOR_SPECIFIC,  # bit 7 clear: an assertion
        OEM_DATA_2_3 | offset,
        short >> 8,
        short & 0xFF,
    )


def record_ids(view: LogView) -> list[int]:
    """Each visible entry's record id: its first four hex digits (never 0000h or FFFFh, which ask for the
    first and the last record); one taken already by an older entry moves to the next free id."""
    taken: set[int] = set()
    out = []
    for entry in view.entries:
        rid = min(max(entry.short_id, 1), 0xFFFE)
        while rid in taken:
            rid = rid % 0xFFFE + 1
        taken.add(rid)
        out.append(rid)
    return out


@dataclass(frozen=True, slots=True)
class Log:
    """The SEL of one view: its records in order, oldest first."""

    view: LogView
    ids: tuple[int, ...]
    records: tuple[bytes, ...]

    @classmethod
    def of(cls, view: LogView) -> Log:
        ids = record_ids(view)
        return cls(view, tuple(ids), tuple(record(i, e) for i, e in zip(ids, view.entries, strict=True)))

    def info(self) -> bytes:
        """Get SEL Info (§31.2): version, entries, free space (16 bytes a transition the history can
        still take), last addition and erase, operations (Reserve; overflow when the history's bound
        dropped entries)."""
        free = max(0, self.view.capacity - self.view.transitions) * RECORD_SIZE
        added = _timestamp(self.view.entries[-1]) if self.view.entries else NEVER
        erased = _timestamp(self.view.cleared) if self.view.cleared is not None else NEVER
        support = RESERVE_SUPPORTED | (OVERFLOW if self.view.overflow else 0)
        return struct.pack("<BHHIIB", SEL_VERSION, len(self.records), free, added, erased, support)

    def entry(self, record_id: int, offset: int, count: int) -> tuple[int, bytes] | None:
        """(next record id, the bytes asked for) of Get SEL Entry (§31.5); None when there is no such
        record. A count of FFh reads the whole record."""
        if not self.records:
            return None
        if record_id == FIRST:
            index = 0
        elif record_id == LAST:
            index = len(self.records) - 1
        elif record_id in self.ids:
            index = self.ids.index(record_id)
        else:
            return None
        following = self.ids[index + 1] if index + 1 < len(self.ids) else LAST
        data = self.records[index]
        return following, data[offset : offset + (RECORD_SIZE if count == 0xFF else count)]

    def signature(self) -> tuple[int, ...]:
        """What changes when an entry is added or the log cleared (a SEL reservation ends then)."""
        return self.ids
