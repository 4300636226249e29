"""vmbmc.machine.history: the one view of the power history every log view renders."""

from __future__ import annotations

import datetime

import pytest

from tests.history_entries import HISTORY, STATES, entry
from vmbmc.controller import transitions as tr
from vmbmc.machine import requests as rq
from vmbmc.machine.history import (
    BOOT_SPEC_CAUSE,
    EXTERNAL_PREFIX,
    MAX_HISTORY,
    VMI_FAILED_CAUSE,
    LogView,
    Origin,
    Reason,
    log_view,
    origin_of,
)
from vmbmc.machine.types import Protocol


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_controllers_words_are_the_views_words() -> None:
    assert VMI_FAILED_CAUSE == EXTERNAL_PREFIX + tr.VMI_FAILED
    assert BOOT_SPEC_CAUSE == EXTERNAL_PREFIX + tr.BOOT_SPEC_CHANGED
    reasons = {tr.POWERED_ON, tr.POWERED_OFF, tr.RESTARTED, tr.PAUSED, tr.RESUMED, tr.BOOT_DEVICE_CHANGED}
    assert reasons == {r.value for r in Reason} - {Reason.LOG_CLEARED.value}
    assert MAX_HISTORY == 20


@pytest.mark.parametrize(
    ("protocol", "user", "client", "origin"),
    [
        (Protocol.IPMI, "admin", "10.0.0.7", Origin.IPMI),
        (Protocol.REDFISH, "admin", "10.0.0.7", Origin.REDFISH),
        (Protocol.KBMC, "-", "-", Origin.KBMC),
    ],
)
def test_origin_from_the_requester_the_controller_names(
    protocol: Protocol, user: str, client: str, origin: Origin
) -> None:
    text = rq.requester_text(protocol.value, user, client)
    assert origin_of(text) is origin
    assert origin_of(f"{text} through BMC ns/other") is origin  # a request through another BMC of the VM


def test_entries_keep_what_was_recorded() -> None:
    view = log_view(HISTORY, None)
    assert [e.id for e in view.entries] == [h["id"] for h in HISTORY]
    on, failed, started, restarted = view.entries
    assert (on.reason, on.origin, on.request_id, on.time) == (
        Reason.POWERED_ON, Origin.IPMI, "aa11", at("2025-06-02T10:00:00Z")
    )
    assert on.message == "by IPMI user admin from 10.0.0.7 (request aa11)"
    assert failed.warning and failed.origin is Origin.EXTERNAL and not failed.request_id
    assert not started.warning and started.origin is Origin.EXTERNAL
    assert restarted.reason is Reason.RESTARTED and restarted.origin is Origin.REDFISH
    assert on.short_id == 0x3F2A and view.cleared is None and not view.overflow
    assert view.last_added == restarted.time and view.transitions == 4


def test_a_clear_hides_what_is_at_or_before_it_and_comes_first() -> None:
    who = "IPMI user admin from ::1"
    cleared = {"time": "2025-06-02T10:05:00Z", "requestId": "91a226b9", "requester": who}
    view = log_view(HISTORY, cleared)
    clear, *rest = view.entries
    assert clear is view.cleared and clear.reason is Reason.LOG_CLEARED
    assert (clear.id, clear.origin, clear.short_id) == ("91a226b9", Origin.IPMI, 0x91A2)
    assert clear.message == "by IPMI user admin from ::1 (request 91a226b9)"
    assert [e.id for e in rest] == ["c0de000000000003", "d00d000000000004"]  # 10:05:00 itself is hidden
    assert view.transitions == 2


def test_entries_show_in_time_order_and_unreadable_ones_are_left_out() -> None:
    later, earlier = HISTORY[1], HISTORY[0]
    unreadable = [{"id": "x", "time": "not a time"}, {"time": "2025-01-01T00:00:00Z"}]
    view = log_view([later, *unreadable, earlier], None)
    assert [e.id for e in view.entries] == [earlier["id"], later["id"]]


def test_overflow_once_the_bound_may_have_dropped_a_visible_entry() -> None:
    full = [
        entry(f"{i:04x}000000000000", f"2025-06-02T10:{i:02d}:00Z", "PoweredOn") for i in range(MAX_HISTORY)
    ]
    assert log_view(full[:-1], None).overflow is False
    assert log_view(full, None).overflow is True
    # A clear after the oldest entry: whatever the bound dropped was hidden by the clear anyway.
    assert log_view(full, {"time": "2025-06-02T10:00:30Z", "requestId": "r"}).overflow is False
    assert log_view(full, {"time": "2025-06-02T09:00:00Z", "requestId": "r"}).overflow is True


@pytest.mark.parametrize(
    ("reason", "message", "expected"),
    [
        ("PoweredOn", "", Reason.POWERED_ON),
        ("PoweredOff", "", Reason.POWERED_OFF),
        ("Paused", "", Reason.PAUSED),
        ("Resumed", "", Reason.RESUMED),
        ("Restarted", "outside the BMC: VMI deleted", Reason.RESTARTED),
        ("BootDeviceChanged", "", Reason.BOOT_DEVICE_CHANGED),
        ("Restarted", BOOT_SPEC_CAUSE + " (boot order disk:root=1)", Reason.BOOT_DEVICE_CHANGED),  # On -> On
    ],
)
def test_an_entry_written_before_entries_had_a_reason(reason: str, message: str, expected: Reason) -> None:
    old = {**entry("0001000000000000", "2025-06-02T10:00:00Z", reason), "message": message}
    del old["reason"]
    (got,) = log_view([old], None).entries
    assert got.reason is expected, STATES[reason]


def test_an_empty_view() -> None:
    view = LogView()
    assert view.entries == () and view.last_added is None and view.find("x") is None
    assert log_view([], {"time": "bad", "requestId": "r"}) == LogView()
