"""The System's log: LogServices collection, LogService `SEL`, its Entries and the ClearLog action.

The entries are the power history (vmbmc.machine.history), the same entries as the IPMI SEL: one
LogEntry per recorded transition after the last clear, and the clear itself. `EntryType: Event`; the
`MessageId` is DMTF's where one fits (ResourceEvent: powered on, off, paused, properties changed;
LogService: log cleared), else vmbmc's own registry (restarted); `Message` is the registry text with the
full cause after it, as the Kubernetes Event says it (`… by IPMI user admin from 10.0.0.7 (request 3f2a…)`).
An entry's Id is the transition's id (a clear's: its request id), the same in every kbmc process.

ClearLog needs ConfigureComponents (Operator), as IPMI Clear SEL does; the BMC's one account is an
Administrator. It is recorded as a request of the BMC and hides earlier entries from every log view;
the Kubernetes Events stay.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vmbmc.machine.errors import MachineError, NotSupported
from vmbmc.machine.history import LogEntry, LogView, Reason
from vmbmc.machine.types import Inventory
from vmbmc.redfish.body import is_annotation, read_object
from vmbmc.redfish.context import requester, service
from vmbmc.redfish.errors import RedfishError, from_machine_error
from vmbmc.redfish.etag import etag_of
from vmbmc.redfish.registry import filled
from vmbmc.redfish.resources.base import collection, ok, ref, resource, status
from vmbmc.redfish.resources.systems import resolve, system_path

log = logging.getLogger(__name__)

LOG_ID = "SEL"
CLEAR_ACTION = "#LogService.ClearLog"

# reason -> (registry prefix, message): the DMTF message where one fits (Resumed: the PowerState goes
# from Paused to On, what ResourcePoweredOn says).
MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.POWERED_ON: ("ResourceEvent", "ResourcePoweredOn"),
    Reason.RESUMED: ("ResourceEvent", "ResourcePoweredOn"),
    Reason.POWERED_OFF: ("ResourceEvent", "ResourcePoweredOff"),
    Reason.PAUSED: ("ResourceEvent", "ResourcePaused"),
    Reason.BOOT_DEVICE_CHANGED: ("ResourceEvent", "ResourceChanged"),
    Reason.RESTARTED: ("Vmbmc", "ResourceRestarted"),
    Reason.LOG_CLEARED: ("LogService", "LogCleared"),
}


def services_path(inv: Inventory) -> str:
    return f"{system_path(inv)}/LogServices"


def log_path(inv: Inventory) -> str:
    return f"{services_path(inv)}/{LOG_ID}"


def entries_path(inv: Inventory) -> str:
    return f"{log_path(inv)}/Entries"


def _log(request: Request) -> Inventory:
    inv = resolve(request)
    if request.path_params["log_id"] != LOG_ID:
        raise RedfishError(404, "ResourceNotFound", "LogService", request.path_params["log_id"])
    return inv


def _time(entry: LogEntry) -> str:
    return _redfish_time(entry.time)


def entry_body(inv: Inventory, entry: LogEntry) -> dict[str, Any]:
    """One LogEntry (what an entry's Event says, with the registry message in front)."""
    prefix, key = MESSAGES[entry.reason]
    args = () if key == "ResourceChanged" else (LOG_ID,) if prefix == "LogService" else (inv.name,)
    message_id, text, str_args, _ = filled(prefix, key, *args)
    return resource(
        "LogEntry", f"{entries_path(inv)}/{entry.id}", entry.id, f"Log Entry {entry.id}",
        EntryType="Event",
        Severity="Warning" if entry.warning else "OK",
        Created=_time(entry),
        EventTimestamp=_time(entry),
        EventId=entry.id,
        MessageId=message_id,
        MessageArgs=str_args,
        Message=f"{text[:-1]}: {entry.message}." if text.endswith(".") else f"{text} {entry.message}",
        Links={"OriginOfCondition": ref(system_path(inv))},
    )


async def log_services(request: Request) -> Response:
    inv = resolve(request)
    body = collection("LogServiceCollection", services_path(inv), "Log Service Collection", [log_path(inv)])
    return ok(body)


async def log_service(request: Request) -> Response:
    inv = _log(request)
    path = log_path(inv)
    body = resource(
        "LogService", path, LOG_ID, "System Event Log",
        Description="The VM's power history: every recorded transition and its cause, as the IPMI SEL "
        "and the Kubernetes Events show it",
        ServiceEnabled=True,
        MaxNumberOfRecords=service(request).machine.history().capacity + 1,  # the transitions and a clear
        OverWritePolicy="WrapsWhenFull",
        DateTime=_redfish_time(datetime.datetime.now(datetime.UTC)),
        DateTimeLocalOffset="+00:00",
        LogEntryType="Event",
        Status=status(),
        Entries=ref(entries_path(inv)),
        Actions={CLEAR_ACTION: {"target": f"{path}/Actions/LogService.ClearLog"}},
    )
    return ok(body)


def _entries(inv: Inventory, view: LogView) -> dict[str, Any]:
    body = collection("LogEntryCollection", entries_path(inv), "Log Entry Collection", [])
    members = [entry_body(inv, e) for e in view.entries]
    return {**body, "Members@odata.count": len(members), "Members": members}


async def log_entries(request: Request) -> Response:
    inv = _log(request)
    return ok(_entries(inv, service(request).machine.history()))


async def log_entry(request: Request) -> Response:
    inv = _log(request)
    entry = service(request).machine.history().find(request.path_params["entry_id"])
    if entry is None:
        raise RedfishError(404, "ResourceNotFound", "LogEntry", request.path_params["entry_id"])
    return ok(entry_body(inv, entry))


async def clear_log(request: Request) -> Response:
    inv = _log(request)
    svc = service(request)
    body = await read_object(request, allow_empty=True)
    for key in body:
        if not is_annotation(key) and key != "LogEntriesETag":
            raise RedfishError(400, "ActionParameterUnknown", CLEAR_ACTION, key)
    if "LogEntriesETag" in body:  # the client cleared what it read: refuse when the entries changed since
        current = etag_of(ok(_entries(inv, svc.machine.history())).body)
        if body["LogEntriesETag"] != current:
            raise RedfishError(428, "PreconditionFailed")
    who = requester(request)
    try:
        entry = await asyncio.shield(svc.machine.clear_log(who))  # a client gone mid-way cancels nothing
    except NotSupported as exc:
        raise RedfishError(400, "ActionNotSupported", CLEAR_ACTION, resolution=exc.message) from exc
    except MachineError as exc:
        raise from_machine_error(exc, action=CLEAR_ACTION, resource=("LogService", LOG_ID)) from exc
    log.info("log cleared", extra={"request_id": who.request_id, "user": who.user, "client": who.client,
                                   "entry": entry.id})
    return Response(status_code=204)


def _redfish_time(at: datetime.datetime) -> str:
    """A Redfish DateTime (Edm.DateTimeOffset) in whole seconds, UTC."""
    return at.astimezone(datetime.UTC).isoformat(timespec="seconds")
