"""The power history as every log view shows it. Pure: no I/O, no clock.

One history, several views (docs/power-history.md): the controller records each transition once in
`status.powerHistory` (with its Kubernetes Events); the kbmc records a log clear in `status.logClearedAt`
(with an Event `LogCleared`). `log_view` turns the two into the `LogView` the log views render: the IPMI
SEL (vmbmc.kbmc.sel), the Redfish LogService (vmbmc.redfish.resources.logs) and, later, pushed Redfish
events. Every view hides the entries at or before the last clear; the Kubernetes Events stay.

An entry keeps the transition's id, time and cause as recorded, so a view's entry is the same in every
kbmc process, before and after a restart or a mode switch.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_HISTORY = 20  # the bound of status.powerHistory (the controller drops the oldest beyond it)

# The words of the controller's messages a view relies on (vmbmc.controller.transitions writes them; a
# unit test keeps the two in step).
EXTERNAL_PREFIX = "outside the BMC: "
VMI_FAILED_CAUSE = EXTERNAL_PREFIX + "VMI failed"
BOOT_SPEC_CAUSE = EXTERNAL_PREFIX + "boot order changed in the VirtualMachine spec"


class Reason(enum.StrEnum):
    """What an entry records: the transition's Event reason, or a log clear."""

    POWERED_ON = "PoweredOn"
    POWERED_OFF = "PoweredOff"
    RESTARTED = "Restarted"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    BOOT_DEVICE_CHANGED = "BootDeviceChanged"
    LOG_CLEARED = "LogCleared"


class Origin(enum.StrEnum):
    """Who caused an entry: a client of the BMC over IPMI or Redfish, the kbmc itself, or something
    outside the BMC (the KubeVirt API, the guest, a failure)."""

    IPMI = "ipmi"
    REDFISH = "redfish"
    KBMC = "kbmc"
    EXTERNAL = "external"


@dataclass(frozen=True, slots=True)
class LogEntry:
    id: str  # the transition's id (16 hex digits); a clear's is its request id
    time: datetime.datetime  # when it happened, as recorded (whole seconds, UTC)
    reason: Reason
    origin: Origin
    message: str  # the full cause, as the Event says it: `by IPMI user admin from … (request …)`
    request_id: str = ""  # the request it is credited to ("" for an External cause)
    from_state: str = ""  # On, Off or Paused; "" for a clear
    to_state: str = ""
    warning: bool = False  # a VMI failed (its Event is a Warning too)

    @property
    def short_id(self) -> int:
        """The first four hex digits of the id as a number (what the SEL carries in event data 2-3)."""
        head = self.id[:4]
        try:
            if len(head) == 4:
                return int(head, 16)
        except ValueError:
            pass
        return int(hashlib.sha256(self.id.encode()).hexdigest()[:4], 16)


@dataclass(frozen=True, slots=True)
class LogView:
    """What a log view shows: the visible entries (oldest first; a clear, when there was one, first)."""

    entries: tuple[LogEntry, ...] = ()
    cleared: LogEntry | None = None  # the last clear
    overflow: bool = False  # the history's bound may have dropped entries no clear hid
    capacity: int = MAX_HISTORY  # transitions the history holds

    @property
    def transitions(self) -> int:
        return sum(1 for e in self.entries if e.reason is not Reason.LOG_CLEARED)

    @property
    def last_added(self) -> datetime.datetime | None:
        return self.entries[-1].time if self.entries else None

    def find(self, entry_id: str) -> LogEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)


def parse_time(value: object) -> datetime.datetime | None:
    """An RFC 3339 time as the API serves it (UTC when it names no zone); None when it is not one."""
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def origin_of(requester: str) -> Origin:
    """The origin named by a history entry's `requester` (vmbmc.machine.requests.requester_text)."""
    if requester.startswith("IPMI "):
        return Origin.IPMI
    if requester.startswith("Redfish "):
        return Origin.REDFISH
    if requester.startswith("the kbmc"):
        return Origin.KBMC
    return Origin.EXTERNAL


def _reason(raw: Mapping[str, Any]) -> Reason:
    """The entry's reason; derived from its states for an entry written before entries carried one (a
    restart of a paused VM then reads as resumed, a request's boot change of a running VM as a restart)."""
    try:
        return Reason(str(raw.get("reason")))
    except ValueError:
        pass
    before, after = str(raw.get("from")), str(raw.get("to"))
    if before == after:
        if before == "On" and not str(raw.get("message", "")).startswith(BOOT_SPEC_CAUSE):
            return Reason.RESTARTED
        return Reason.BOOT_DEVICE_CHANGED
    if after == "Off":
        return Reason.POWERED_OFF
    if after == "Paused":
        return Reason.PAUSED
    return Reason.RESUMED if before == "Paused" else Reason.POWERED_ON


def history_entry(raw: Mapping[str, Any]) -> LogEntry | None:
    """One `status.powerHistory` entry as a view shows it; None when it is unreadable."""
    at = parse_time(raw.get("time"))
    if at is None or not raw.get("id"):
        return None
    external = raw.get("cause") != "Request"
    message = str(raw.get("message") or "")
    return LogEntry(
        id=str(raw["id"]),
        time=at,
        reason=_reason(raw),
        origin=Origin.EXTERNAL if external else origin_of(str(raw.get("requester") or "")),
        message=message,
        request_id="" if external else str(raw.get("requestId") or ""),
        from_state=str(raw.get("from") or ""),
        to_state=str(raw.get("to") or ""),
        warning=message == VMI_FAILED_CAUSE,
    )


def clear_message(requester: str, request_id: str) -> str:
    """The cause of a clear, as its Event `LogCleared` and every view say it."""
    return f"by {requester} (request {request_id})"


def cleared_entry(raw: Mapping[str, Any] | None) -> LogEntry | None:
    """`status.logClearedAt` {time, requestId, requester} as the entry that records the clear."""
    if not raw:
        return None
    at = parse_time(raw.get("time"))
    request_id = str(raw.get("requestId") or "")
    if at is None or not request_id:
        return None
    requester = str(raw.get("requester") or "")
    return LogEntry(
        id=request_id,
        time=at,
        reason=Reason.LOG_CLEARED,
        origin=origin_of(requester) if requester else Origin.EXTERNAL,
        message=clear_message(requester or "a client of the BMC", request_id),
        request_id=request_id,
    )


def log_view(history: Sequence[Mapping[str, Any]], cleared: Mapping[str, Any] | None) -> LogView:
    """The visible log: the recorded transitions after the last clear, the clear first.

    Overflow: the history holds its bound and its oldest entry is newer than the clear, so the bound may
    have dropped an entry no clear had hidden (with exactly 20 recorded since, none was: the history
    does not count what it dropped)."""
    clear = cleared_entry(cleared)
    entries = [e for e in (history_entry(raw) for raw in history) if e is not None]
    full = len(history) >= MAX_HISTORY and bool(entries)
    overflow = full and (clear is None or entries[0].time > clear.time)
    if clear is not None:
        entries = [e for e in entries if e.time > clear.time]
    entries.sort(key=lambda e: e.time)  # stable: the recorded order breaks ties
    return LogView(
        entries=tuple([clear] if clear is not None else []) + tuple(entries),
        cleared=clear,
        overflow=overflow,
    )
