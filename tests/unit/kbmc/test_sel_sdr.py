"""The SEL records and the SDR repository, byte for byte (IPMI 2.0 §31-§33, §43). The clients' own reading
of them is tested against the real kbmc (tests/integration/kbmc/test_kbmc_sel.py)."""

from __future__ import annotations

import asyncio
import datetime
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "redfish"))

from machine_double import FakeMachine

from tests.history_entries import HISTORY, entry
from vmbmc.kbmc import sdr, sel
from vmbmc.kbmc.commands import Caller, Commands, Outcome, Waiting
from vmbmc.kbmc.sessions import Priv
from vmbmc.kbmc.wire import Request
from vmbmc.machine.history import MAX_HISTORY, LogEntry, Origin, Reason, log_view
from vmbmc.machine.types import Requester

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


# --- the commands, on a test double of the Machine ----------------------------------------------------

class SlowClear(FakeMachine):
    """A machine whose clear is stored only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[LogEntry]] = []

    def clear_log(self, requester: Requester) -> asyncio.Future[LogEntry]:
        future: asyncio.Future[LogEntry] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future


def command(commands: Commands, cmd: int, data: bytes = b"", priv: Priv = Priv.OPERATOR) -> Outcome:
    request = Request(netfn=0x0A, cmd=cmd, data=data, rq_addr=0x81, rq_seq=0, rq_lun=0, rs_lun=0)
    return commands.handle(Caller("admin", "10.0.0.7", priv), request)[1]


async def test_clear_sel_answers_once_stored_and_its_status_after() -> None:
    machine = SlowClear()
    machine.power_history = HISTORY
    commands = Commands(machine)
    code, reservation = command(commands, 0x42)  # Reserve SEL
    assert code == 0 and reservation == b"\x01\x00"
    assert command(commands, 0x47, b"\x09\x00CLR\xaa") == (0xC5, b"")  # not the current reservation
    assert command(commands, 0x47, reservation + b"CLR\xaa", priv=Priv.USER) == (0xD4, b"")  # Operator
    waiting = command(commands, 0x47, reservation + b"CLR\xaa")
    assert isinstance(waiting, Waiting)
    assert command(commands, 0x47, reservation + b"CLR\x00") == (0, b"\x00")  # erasure in progress
    answer = asyncio.ensure_future(commands.finish("Clear SEL", waiting))
    (future,) = machine.pending
    now = datetime.datetime.now(datetime.UTC)
    cleared = LogEntry("c1ea7000", now, Reason.LOG_CLEARED, Origin.IPMI, "by …")
    future.set_result(cleared)
    assert await answer == (0, b"\x01")  # erasure completed
    machine.log_cleared = {"time": "2999-01-01T00:00:00Z", "requestId": "c1ea7000"}  # the SEL changed
    assert command(commands, 0x47, reservation + b"CLR\x00") == (0, b"\x01")  # still asked, after it
    assert command(commands, 0x47, reservation + b"CLR\xaa") == (0xC5, b"")  # a change ends the reservation


async def test_clear_sel_slower_than_the_answer_wait_is_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vmbmc.kbmc.commands.ANSWER_WAIT", 0.05)
    machine = SlowClear()
    commands = Commands(machine)
    _, reservation = command(commands, 0x42)
    waiting = command(commands, 0x47, reservation + b"CLR\xaa")
    assert isinstance(waiting, Waiting)
    assert await commands.finish("Clear SEL", waiting) == (0, b"\x00")  # FreeIPMI then asks again


def test_get_sel_entry_and_sdr_through_the_commands() -> None:
    machine = FakeMachine()
    machine.power_history = HISTORY
    commands = Commands(machine)
    code, data = command(commands, 0x43, b"\x00\x00\x00\x00\x00\xff", priv=Priv.USER)
    assert code == 0 and data[:2] == b"\x0b\xb0" and data[2:4] == b"\x2a\x3f"  # next B00B; this one 3F2A
    assert command(commands, 0x43, b"\x00\x00\x2a\x3f\x05\x04", priv=Priv.USER) == (0xC5, b"")  # partial
    code, info = command(commands, 0x20, priv=Priv.USER)  # Get SDR Repository Info
    assert code == 0 and info[1:3] == b"\x0d\x00"
    code, first = command(commands, 0x23, b"\x01\x00\x00\x00\x00\x05", priv=Priv.USER)
    assert code == 0 and first == b"\x02\x00" + sdr.repository("vm1")[0][:5]
