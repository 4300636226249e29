"""The power history of one BMC as its log views read it, and the log clear, on KubeVirt.

The history is the controller's `status.powerHistory` of the BMC the kbmc already watches (a standalone
BMC has none: no controller records its transitions); the clear is `status.logClearedAt` (standalone:
a VM annotation), which the kbmc writes. Reads come from the watch cache and never block. A clear is a
request of the BMC like any other: its record and Event (`ClearLogRequested`) first, then the write,
then the Event `LogCleared`; the request settles `called` or `failed` (Warning `PowerActionFailed`), and
a restarted kbmc settles a `pending` one by what `logClearedAt` shows.

`watch` tells listeners when the view changes: the SEL and the Redfish log read on demand; pushed
events need to hear of each new entry.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

from vmbmc.k8s import clock
from vmbmc.k8s.client import ApiError
from vmbmc.kubevirt.records import RecordStore
from vmbmc.kubevirt.requests import RequestLog
from vmbmc.machine import requests as rq
from vmbmc.machine.errors import BackendUnavailable
from vmbmc.machine.history import LogEntry, LogView, clear_message, cleared_entry, log_view
from vmbmc.machine.types import Effect, Requester

log = logging.getLogger(__name__)

REMEMBERED_CLEARS = 64  # clears whose answer a repeated request id gets

Listener = Callable[[LogView], None]


class HistorySource:
    """One BMC's log: its view from the cache, and its clear. Runs on the machine's loop."""

    def __init__(self, store: RecordStore, requests: RequestLog, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.requests = requests
        self.loop = loop
        self._cached: tuple[object, LogView] | None = None  # (holder version, its view)
        self._clears: collections.OrderedDict[str, asyncio.Future[LogEntry]] = collections.OrderedDict()
        self._listeners: list[Listener] = []
        self._shown: LogView | None = None  # the view listeners last heard of
        self._tasks: set[asyncio.Task[None]] = set()

    # --- reads ----------------------------------------------------------------------------------
    def view(self) -> LogView:
        holder = self.store.current()
        if holder is None:
            return LogView()
        version = (holder.get("metadata") or {}).get("resourceVersion") or id(holder)
        if self._cached is None or self._cached[0] != version:  # a SEL listing reads it once per entry
            self._cached = (version, log_view(self.store.power_history(), self.store.log_cleared()))
        return self._cached[1]

    def carried_out(self, request_id: str) -> bool:
        """After a restart: was a `pending` clear stored?"""
        return str((self.store.log_cleared() or {}).get("requestId") or "") == request_id

    # --- listeners ------------------------------------------------------------------------------
    def watch(self, listener: Listener) -> Callable[[], None]:
        if not self._listeners:
            self._shown = self.view()
            self.store.informer.subscribe(self.store.name, self._on_change)
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
                if not self._listeners:
                    self.store.informer.unsubscribe(self.store.name, self._on_change)

        return stop

    def _on_change(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        view = self.view()
        if view == self._shown:
            return
        self._shown = view
        for listener in list(self._listeners):
            try:
                listener(view)
            except Exception:  # one listener's bug must not cost the others their news
                log.exception("history listener failed", extra={"object": self.store.name})

    # --- the clear ------------------------------------------------------------------------------
    def clear(self, requester: Requester) -> asyncio.Future[LogEntry]:
        seen = self._clears.get(requester.request_id)
        if seen is not None:
            return seen
        future: asyncio.Future[LogEntry] = self.loop.create_future()
        # IPMI may answer before the write is done and never await this: keep asyncio from calling it lost
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        self._clears[requester.request_id] = future
        while len(self._clears) > REMEMBERED_CLEARS:
            self._clears.popitem(last=False)
        task = self.loop.create_task(self._clear(requester, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _clear(self, requester: Requester, future: asyncio.Future[LogEntry]) -> None:
        who = rq.requester_text(requester.protocol.value, requester.user, requester.client)
        value = {"time": clock.rfc3339(), "requestId": requester.request_id, "requester": who}
        try:
            async with asyncio.timeout(rq.CALL_BOUND_SECONDS):
                await self.requests.open(requester, rq.LOG_CLEAR_ACTION, Effect.PENDING)
                await self.store.write_log_cleared(value)
        except (ApiError, TimeoutError) as err:
            bound = f"not stored within {rq.CALL_BOUND_SECONDS:g} s"
            text = err.message if isinstance(err, ApiError) else bound
            log.warning("log clear failed", extra={"object": self.store.name, "error": text})
            await self.requests.settle(requester, rq.LOG_CLEAR_ACTION, Effect.FAILED, text)
            if not future.done():
                future.set_exception(BackendUnavailable(f"the log clear could not be stored: {text}"))
            return
        entry = cleared_entry(value)
        assert entry is not None
        log.info("log cleared", extra={"object": self.store.name, "request_id": requester.request_id})
        await asyncio.gather(
            self.requests.settle(requester, rq.LOG_CLEAR_ACTION, Effect.CALLED),
            self.requests.events.emit(
                self.store.involved_object(),
                "Normal",
                rq.LOG_CLEARED_REASON,
                f"log cleared {clear_message(who, requester.request_id)}: the SEL and the Redfish log show "
                f"nothing recorded at or before {value['time']}; Kubernetes Events stay",
                f"{self.requests.vm}/{requester.request_id}/{rq.LOG_CLEARED_REASON}",
                action=rq.LOG_CLEARED_REASON,
            ),
        )
        if not future.done():
            future.set_result(entry)

    def close(self) -> None:
        if self._listeners:
            self._listeners.clear()
            self.store.informer.unsubscribe(self.store.name, self._on_change)
        for task in list(self._tasks):
            task.cancel()
