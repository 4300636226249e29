"""The SEL records and the SDR repository, byte for byte (IPMI 2.0 §31-§33, §43). The clients' own reading
of them is tested against the real kbmc (tests/integration/kbmc/test_kbmc_sel.py)."""

from __future__ import annotations

import struct

from tests.history_entries import HISTORY, entry
from vmbmc.kbmc import sdr, sel
from vmbmc.machine.history import MAX_HISTORY, Origin, Reason, log_view

CLEARED = {"time": "2025-06-02T09:00:00Z", "requestId": "91a226b9fad0b4c0", "requester": "the kbmc"}


def test_a_power_on_over_ipmi_is_an_acpi_s0_record() -> None:
    log = sel.Log.of(log_view(HISTORY[:1], None))
    (record,) = log.records
    fields = struct.unpack("<HBIHBBBBBBB", record)
    rid, rtype, stamp, generator, evm, stype, number, dirtype, d1, d2, d3 = fields
    assert (rid, rtype, stamp) == (0x3F2A, 0x02, 1748858400)  # 2025-06-02T10:00:00Z
    assert generator == 0x0081  # remote console software 1 (software id 40h), channel 0
    assert (evm, stype, number, dirtype) == (0x04, 0x22, 0x01, 0x6F)  # ACPI power state, an assertion
    assert (d1, d2, d3) == (0xA0, 0x3F, 0x2A)  # S0/G0; OEM data: the transition id's first four digits


def test_each_reason_and_origin_names_a_sensor_of_the_repository() -> None:
    sensors = {(s.owner, s.kind.number, s.kind.sensor_type) for s in sdr.SENSORS}
    can_cause = {
        Origin.IPMI: set(Reason),
        Origin.REDFISH: set(Reason),
        Origin.KBMC: {Reason.BOOT_DEVICE_CHANGED},  # the once-restore, the late-patch undo, media clean-up
        Origin.EXTERNAL: set(Reason) - {Reason.LOG_CLEARED},
    }
    for origin, reasons in can_cause.items():
        for reason in reasons:
            kind, _ = sel.EVENTS[reason]
            assert (sdr.GENERATORS[origin], kind.number, kind.sensor_type) in sensors, (origin, reason)
    assert len(sensors) == len(sdr.SENSORS) == 12


def test_record_ids_are_the_ids_first_digits_and_unique() -> None:
    clash = [
        entry("3f2a000000000001", "2025-06-02T10:00:00Z", "PoweredOn"),
        entry("3f2affffffffffff", "2025-06-02T10:01:00Z", "PoweredOff"),
        entry("0000aaaaaaaaaaaa", "2025-06-02T10:02:00Z", "PoweredOn"),
        entry("ffffbbbbbbbbbbbb", "2025-06-02T10:03:00Z", "PoweredOff"),
    ]
    assert sel.record_ids(log_view(clash, None)) == [0x3F2A, 0x3F2B, 0x0001, 0xFFFE]
    # The same history gives the same ids, whichever process reads it.
    assert sel.record_ids(log_view(list(clash), None)) == sel.record_ids(log_view(clash, None))


def test_get_sel_entry_walks_the_log_in_order() -> None:
    log = sel.Log.of(log_view(HISTORY, CLEARED))
    seen, rid = [], sel.FIRST
    while rid != sel.LAST:
        found = log.entry(rid, 0, 0xFF)
        assert found is not None
        rid, data = found
        seen.append(struct.unpack("<H", data[:2])[0])
    assert seen == [0x91A2, 0x3F2A, 0xB00B, 0xC0DE, 0xD00D]  # the clear first, then the transitions
    assert log.entry(sel.LAST, 0, 0xFF) == (sel.LAST, log.records[-1])
    assert log.entry(0xD00D, 9, 3) == (sel.LAST, log.records[-1][9:12])  # a partial read
    assert log.entry(0x1234, 0, 0xFF) is None
    assert sel.Log.of(log_view([], None)).entry(sel.FIRST, 0, 0xFF) is None


def test_the_clear_is_a_log_area_cleared_record_of_who_cleared() -> None:
    log = sel.Log.of(log_view([], {**CLEARED, "requester": "Redfish user admin from 10.0.0.8"}))
    (record,) = log.records
    assert record[7:9] == b"\x83\x00"  # remote console software 2: a Redfish client
    assert record[10:16] == bytes((0x10, 0x04, 0x6F, 0xA2, 0x91, 0xA2))  # event logging: log area cleared


def test_sel_info() -> None:
    info = sel.Log.of(log_view(HISTORY, None)).info()
    version, count, free, added, erased, support = struct.unpack("<BHHIIB", info)
    assert (version, count, free, support) == (0x51, 4, (MAX_HISTORY - 4) * 16, 0x02)
    assert (added, erased) == (1748858820, 0xFFFFFFFF)  # 10:07:00, never erased
    full = [entry(f"{i:04x}000000000000", f"2025-06-02T10:{i:02d}:00Z", "PoweredOn") for i in range(20)]
    _, count, free, _, _, support = struct.unpack("<BHHIIB", sel.Log.of(log_view(full, None)).info())
    assert (count, free, support) == (20, 0, 0x82)  # overflow: the history's bound drops entries now
    cleared = sel.Log.of(log_view(HISTORY, CLEARED)).info()
    assert struct.unpack("<BHHIIB", cleared)[4] == 1748854800  # erased 09:00:00


def test_sdr_repository_records() -> None:
    records = sdr.repository("vm1")
    assert len(records) == 13
    locator = records[0]
    assert locator[:5] == bytes((0x01, 0x00, 0x51, 0x12, len(locator) - 5))
    assert locator[5] == 0x20 and locator[8] == 0x8F  # the BMC at 20h: chassis, FRU, SEL, SDR, sensors
    assert locator[-3:] == b"vm1"
    first = records[1]
    assert first[:5] == bytes((0x02, 0x00, 0x51, 0x03, len(first) - 5))
    assert first[5:12] == bytes((0x81, 0x00, 0x01, 0x17, 0x01, 0x22, 0x6F))
    assert first[16] == 0xC0 | len("IPMI Power") and first[17:] == b"IPMI Power"
    assert all(len(r) - 5 == r[4] for r in records) and all(len(s.name) <= 16 for s in sdr.SENSORS)
    assert sdr.get_sdr(records, 0, 0, 5) == (2, records[0][:5])
    assert sdr.get_sdr(records, 13, 5, 0xFF) == (0xFFFF, records[12][5:])
    assert sdr.get_sdr(records, 0xFFFF, 0, 0xFF) == (0xFFFF, records[12])
    assert sdr.get_sdr(records, 14, 0, 5) is None
    count, free, added, erased, support = struct.unpack("<HHIIB", sdr.repository_info(13)[1:])
    assert (count, free, erased, support) == (13, 0, 0xFFFFFFFF, 0x02)
    assert added == sdr.ADDED  # fixed: FreeIPMI's SDR cache stays valid across restarts


def test_generators() -> None:
    """Remote console software ids 40h and 41h, the BMC's slave address, system management software 20h."""
    assert [sdr.GENERATORS[o] for o in (Origin.IPMI, Origin.REDFISH, Origin.KBMC, Origin.EXTERNAL)] == [
        0x81, 0x83, 0x20, 0x41
    ]
