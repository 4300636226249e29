"""The lifecycle of a BMC's request records, in one place (contracts: power history).

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
from typing import Any

from vmbmc.kubevirt import clock
from vmbmc.kubevirt.client import ApiClient, ApiError
from vmbmc.kubevirt.events import create_event, event_body
from vmbmc.kubevirt.records import COMPONENT, RecordStore, reporting_instance
from vmbmc.machine import requests as rq
from vmbmc.machine.power import KubeVirtCall
from vmbmc.machine.types import Effect, Requester

log = logging.getLogger(__name__)

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
    ) -> None:
        """Write one Event about `involved` (nothing when the holder is gone). Never raises."""
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
            ),
        )

    async def settle(self, requester: Requester, action: str, effect: Effect, error: str = "") -> None:
        """The call's outcome: `called`, `failed` (with KubeVirt's `error`, also in a Warning Event) or
        `unknown`; `none` when KubeVirt showed the target was reached already."""
        entry = self._open.pop(requester.request_id, None) or rq.record(
            requester, action, effect, clock.rfc3339()
        )
        jobs = [self._write({**entry, "effect": effect.value})]
        if effect is Effect.FAILED:
            jobs.append(
                self.events.emit(
                    self.store.involved_object(),
                    "Warning",
                    rq.FAILED_REASON,
                    f"{rq.action_text(action)} {rq.by(entry)} failed: {error}",
                    f"{self.vm}/{requester.request_id}/failed",
                    action=rq.reason(action),
                )
            )
        await asyncio.gather(*jobs)

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
