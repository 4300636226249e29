"""The lifecycle of a BMC's request records, in one place (what power history attributes transitions to).

    open()    before any KubeVirt call: the record (effect pending; none or refused when there is nothing
              to call) and its Normal Event, whose message names the action and the KubeVirt call.
    settle()  after the call: effect called, failed (plus a Warning Event with KubeVirt's answer) or
              unknown (no answer: the call may have reached KubeVirt).

A record keeps the time it was opened: the controller attributes a transition to a request made before
it. Writing a record never raises (the request goes on; a missing record only costs attribution).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from vmbmc.k8s import clock
from vmbmc.k8s.client import ApiClient, ApiError
from vmbmc.k8s.events import create_event, event_body
from vmbmc.kubevirt.records import COMPONENT, RecordStore, reporting_instance
from vmbmc.machine import requests as rq
from vmbmc.machine.power import KubeVirtCall
from vmbmc.machine.types import Effect, Protocol, Requester

log = logging.getLogger(__name__)

RESTART_TEXT = "the kbmc restarted before KubeVirt showed the call was accepted; it is not sent again"
OPEN_MAX = 512  # records opened and not settled yet, remembered for settle()


class EventWriter:
    """The kbmc's Events, named `<object>.<16 hex digits>` from a key: a retry is a 409, not a copy."""

    def __init__(self, api: ApiClient, salt: str) -> None:
        self.api = api
        self.salt = salt  # per process: request ids of two processes never collide into one name
        self.instance = reporting_instance()

    async def emit(
        self,
        involved: dict[str, Any] | None,
        event_type: str,
        reason: str,
        message: str,
        key: str,
        *,
        action: str,
        recorded: str = "",
        effect: bool = True,
    ) -> None:
        """Write one Event about `involved` (nothing when the holder is gone). Never raises. `effect`
        (the default): it records something seen after its cause, so it is listed after it (events.py);
        False only for a client's request."""
        if involved is None:
            return
        digest = hashlib.sha256(f"{self.salt}/{key}".encode()).hexdigest()[:16]
        body = event_body(
            name=f"{involved['name']}.{digest}",
            about=involved,
            type_=event_type,
            reason=reason,
            message=message,
            action=action,
            component=COMPONENT,
            instance=self.instance,
            recorded=recorded,
            effect=effect,
        )
        try:
            await create_event(self.api, body)
        except ApiError as err:
            log.warning(
                "could not write Event",
                extra={"reason": reason, "object": involved["name"], "code": err.code, "error": err.message},
            )


class RequestLog:
    """One BMC's request records and their Events."""

    def __init__(self, store: RecordStore, events: EventWriter, vm: str) -> None:
        self.store = store
        self.events = events
        self.vm = vm  # "namespace/name": part of the Event keys (one process may serve many VMs)
        self._open: dict[str, dict[str, Any]] = {}

    async def open(
        self,
        requester: Requester,
        action: str,
        effect: Effect,
        *,
        call: KubeVirtCall | None = None,
        what: str = "",
        note: str = "",
    ) -> None:
        """Record a request that passed authentication, before any KubeVirt call, with its Event.
        `call`: the KubeVirt call it leads to (None: a patch of the VM); `what`: details of the request
        (a boot override's target); `note`: why there is no call, for none and refused."""
        entry = rq.record(requester, action, effect, clock.rfc3339())
        if effect in (Effect.PENDING, Effect.UNKNOWN):
            while len(self._open) >= OPEN_MAX:
                self._open.pop(next(iter(self._open)))
            self._open[requester.request_id] = entry
        message = rq.request_message(entry, call=call, what=what, note=note)
        await asyncio.gather(
            self._write(entry),
            self.events.emit(
                self.store.involved_object(),
                "Normal",
                rq.reason(action),
                message,
                f"{self.vm}/{requester.request_id}",
                action=rq.reason(action),
                recorded=entry["time"],
                # the kbmc's own requests react to something seen (a used override, a failed import)
                effect=requester.protocol is Protocol.KBMC,
            ),
        )

    async def settle(self, requester: Requester, action: str, effect: Effect, error: str = "") -> None:
        """The call's outcome: `called`, `failed` (with KubeVirt's `error`, also in a Warning Event) or
        `unknown`; `none` when KubeVirt showed the target was reached already."""
        entry = self._open.pop(requester.request_id, None) or rq.record(
            requester, action, effect, clock.rfc3339()
        )
        jobs = [self._write({**entry, "effect": effect.value})]
        if effect in (Effect.FAILED, Effect.UNKNOWN):  # unknown: no answer, it may yet be carried out
            outcome = "failed" if effect is Effect.FAILED else "got no answer"
            jobs.append(
                self.events.emit(
                    self.store.involved_object(),
                    "Warning",
                    rq.FAILED_REASON,
                    f"{rq.action_text(action)} {rq.by(entry)} {outcome}: {error}",
                    f"{self.vm}/{requester.request_id}/failed",
                    action=rq.reason(action),
                )
            )
        await asyncio.gather(*jobs)

    async def recover(self, carried_out: Callable[[dict[str, Any]], bool]) -> None:
        """After a restart: settle the `pending` records a previous process left (this process has not
        opened them). None is sent again: `called` when `carried_out(record)` shows KubeVirt took the
        call, else `failed` with its Warning Event (docs/power-history.md says why not `unknown`)."""
        # A record younger than the call bound may belong to a process still at work (a rolling update
        # runs two kbmcs a moment): wait until every such call would have been answered or given up.
        youngest = [
            made
            for entry in self.store.requests()
            if entry.get("effect") == Effect.PENDING.value
            and (made := clock.parse(str(entry.get("time") or ""))) is not None
        ]
        wait = max(
            (rq.CALL_BOUND_SECONDS + 1 - (clock.now() - t).total_seconds() for t in youngest), default=0
        )
        if wait > 0:
            await asyncio.sleep(wait)
        for entry in self.store.requests():  # read again: the other process may have settled some
            if entry.get("effect") != Effect.PENDING.value or entry.get("id") in self._open:
                continue
            requester = Requester(
                Protocol(str(entry.get("protocol"))),
                str(entry.get("user")),
                str(entry.get("client")),
                str(entry.get("id")),
            )
            self._open[requester.request_id] = entry
            if carried_out(entry):
                log.info(
                    "settled a request left by a restart", extra={"vm": self.vm, "request_id": entry["id"]}
                )
                await self.settle(requester, str(entry.get("action")), Effect.CALLED)
            else:
                await self.settle(requester, str(entry.get("action")), Effect.FAILED, RESTART_TEXT)

    def requests(self) -> list[dict[str, Any]]:
        return self.store.requests()

    async def _write(self, entry: dict[str, Any]) -> None:
        try:
            await self.store.record_request(entry)
        except (ApiError, KeyError) as err:
            log.warning(
                "could not write the request record",
                extra={"vm": self.vm, "request_id": entry["id"], "error": str(err)},
            )
