"""One BMC's Redfish EventService at run time: its subscriptions, kept in the machine's store
(vmbmc.machine.subscriptions; on KubeVirt the BMC's Secret), and their delivery.

Every recorded history entry (vmbmc.machine.history: the power transitions and a log clear) is pushed to
every subscription that wants it, in order, at least once, each with a stable EventId (the transition's
id), so a receiver drops a repeat. Each subscription has a task of its own (`_Worker`): a receiver that
is slow or down delays only its own events, and nothing here runs on the path of a Redfish or IPMI
answer: the history listener only wakes the workers. After each delivery the subscription's cursor (the
last EventId delivered) is written to the store, off the delivery path (`_persist`), so after a restart
only later events are sent, and those recorded while no kbmc ran are sent then.

A failed delivery (no 2xx answer, a timeout, no connection) is retried `DeliveryRetryAttempts` times,
`DeliveryRetryIntervalSeconds` apart; then the subscription is deleted (TerminateAfterRetries) or
suspended with its events kept (SuspendRetries: Status.State Disabled until ResumeSubscription).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import importlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vmbmc.destinations import AllowList
from vmbmc.machine.api import Machine
from vmbmc.machine.errors import BackendUnavailable
from vmbmc.machine.history import LogEntry, LogView
from vmbmc.machine.subscriptions import SETTINGS_KEY
from vmbmc.redfish import egress
from vmbmc.redfish.resources.logs import entry_message, event_record
from vmbmc.redfish.schemas import odata_type
from vmbmc.redfish.subscriptions import Cursor, Subscription, cursor_at, destination_parts, pending

if TYPE_CHECKING:
    from vmbmc.redfish.poster import Poster

log = logging.getLogger(__name__)

RELOAD_RETRY = 5.0  # the store could not be read: try again this soon
MAX_TESTS = 16  # test events queued per subscription
REMEMBERED = 64  # EventIds a worker remembers having sent (no repeat within a process)


@dataclass(frozen=True, slots=True)
class Settings:
    """The EventService's retry settings (DMTF: read-write; PATCHed, kept in the store)."""

    attempts: int = 3
    interval: int = 30

    def to_record(self) -> dict[str, int]:
        return {"DeliveryRetryAttempts": self.attempts, "DeliveryRetryIntervalSeconds": self.interval}

    @classmethod
    def from_record(cls, raw: dict[str, Any]) -> Settings:
        default = cls()
        attempts = raw.get("DeliveryRetryAttempts", default.attempts)
        interval = raw.get("DeliveryRetryIntervalSeconds", default.interval)
        return cls(
            attempts if isinstance(attempts, int) else default.attempts,
            interval if isinstance(interval, int) else default.interval,
        )


def payload(sub: Subscription, event_id: str, records: list[dict[str, Any]]) -> bytes:
    """One Redfish Event (the body POSTed), its Id the first record's EventId."""
    body = {
        "@odata.type": odata_type("Event"),
        "Id": event_id,
        "Name": "vmbmc event",
        "Context": sub.context,
        "Events": records,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class EventService:
    def __init__(
        self,
        machine: Machine,
        allow: AllowList,
        *,
        poster: Callable[[AllowList], Poster] | None = None,
    ) -> None:
        self.machine = machine
        self.allow = allow
        self.store = machine.event_subscriptions()
        self.settings = Settings()
        self.subscriptions: dict[str, Subscription] = {}
        self._make_poster = poster
        self._poster: Poster | None = None
        self._workers: dict[str, _Worker] = {}
        self._writes: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._dirty: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loaded = False
        self._load_lock = asyncio.Lock()
        self._stop_watch: Callable[[], None] | None = None
        self.running = False

    # --- life ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Begin delivering: read the store (again until it answers), then every subscription catches
        up on what was recorded since its cursor, and each new entry wakes them."""
        self.running = True
        self._stop_watch = self.machine.watch_history(self._on_history)
        self._spawn(self._load_until_read())

    async def stop(self) -> None:
        self.running = False
        if self._stop_watch is not None:
            self._stop_watch()
            self._stop_watch = None
        for worker in list(self._workers.values()):
            worker.task.cancel()
        for task in list(self._tasks):
            task.cancel()
        pending_tasks = [w.task for w in self._workers.values()] + list(self._tasks)
        await asyncio.gather(*pending_tasks, return_exceptions=True)
        self._workers.clear()
        if self._poster is not None:
            await self._poster.close()
            self._poster = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load_until_read(self) -> None:
        warned = False
        while self.running:
            try:
                await self.loaded()
            except BackendUnavailable as err:
                if not warned:
                    log.warning("event subscriptions not readable yet", extra={"error": err.message})
                    warned = True
                await asyncio.sleep(RELOAD_RETRY)
                continue
            if self.subscriptions:
                await self._warm()
            for sub in self.subscriptions.values():
                self._worker(sub.id)
            return

    async def _warm(self) -> None:
        """Load the HTTP client before the first event needs it (aiohttp takes a few hundred ms to
        import), in a thread, so that neither the event nor the BMC's answers wait for it."""
        if self._poster is None and self._make_poster is None:
            await asyncio.to_thread(importlib.import_module, "vmbmc.redfish.poster")
        self.poster()

    async def loaded(self) -> None:
        """Read the store once (raises BackendUnavailable while it cannot be read)."""
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            records = await self.store.load()
            for key, raw in records.items():
                if key == SETTINGS_KEY:
                    self.settings = Settings.from_record(raw)
                    continue
                try:
                    self.subscriptions[key] = Subscription.from_record(key, raw)
                except ValueError:
                    log.warning("unreadable subscription ignored", extra={"subscription": key})
            self._loaded = True
            log.info("event subscriptions read", extra={"subscriptions": len(self.subscriptions),
                                                        "durable": self.store.durable})

    # --- what the Redfish resources do ------------------------------------------------------------
    async def create(self, make: Callable[[str], Subscription]) -> Subscription:
        """Store a new subscription (`make(id)` checks the request); its destination must be admitted
        (egress.Refused otherwise). Only events recorded from now on are sent to it."""
        await self.loaded()
        sub = make(secrets.token_hex(8))
        await egress.check(self.allow, sub.destination)
        # From the last entry recorded now; with none yet, everything recorded later is new (no clock).
        view = self.machine.history()
        sub = sub.with_cursor(cursor_at(view.entries[-1]) if view.entries else Cursor())
        await self.store.put(sub.id, sub.to_record())
        self.subscriptions[sub.id] = sub
        log.info("event subscription created", extra={"subscription": sub.id, "destination": _where(sub)})
        if self.running:
            self._spawn(self._start_worker(sub.id))
        return sub

    async def _start_worker(self, sub_id: str) -> None:
        await self._warm()
        if sub_id in self.subscriptions:
            self._worker(sub_id)

    async def delete(self, sub_id: str) -> bool:
        await self.loaded()
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        worker = self._workers.pop(sub_id, None)
        if worker is not None:
            worker.task.cancel()
        async with self._writes[sub_id]:  # after a cursor write under way, never before it
            try:
                await self.store.remove(sub_id)
            except BackendUnavailable:
                self.subscriptions[sub_id] = sub  # still stored: still there
                self._worker(sub_id)
                raise
        self._writes.pop(sub_id, None)
        log.info("event subscription deleted", extra={"subscription": sub_id})
        return True

    async def set_enabled(
        self, sub_id: str, enabled: bool, buffered: datetime.timedelta | None = None
    ) -> None:
        """Suspend or resume; a resume sends the events kept meanwhile (only those at most `buffered`
        old, when given)."""
        await self.loaded()
        sub = self.subscriptions[sub_id]
        cursor = sub.cursor
        if enabled and buffered is not None:
            cutoff = datetime.datetime.now(datetime.UTC) - buffered
            for entry in pending(self.machine.history(), cursor):
                if entry.time >= cutoff:
                    break
                cursor = cursor_at(entry)
        new = replace(sub, enabled=enabled, cursor=cursor)
        await self.store.put(sub_id, new.to_record())
        self.subscriptions[sub_id] = new
        log.info("event subscription " + ("resumed" if enabled else "suspended"),
                 extra={"subscription": sub_id})
        worker = self._workers.pop(sub_id, None)
        if worker is not None:
            worker.task.cancel()
        if enabled:
            self._worker(sub_id)

    async def set_settings(self, settings: Settings) -> None:
        await self.loaded()
        await self.store.put(SETTINGS_KEY, settings.to_record())
        self.settings = settings

    async def submit_test(self, record: dict[str, Any], event_type: str | None) -> int:
        """Queue a test event for every enabled subscription whose EventTypes take it; how many."""
        await self.loaded()
        # one EventId for every copy, the client's or ours (DMTF: the service may define it)
        record = {**record, "EventId": str(record.get("EventId") or secrets.token_hex(8))}
        count = 0
        for sub in self.subscriptions.values():
            takes = sub.event_types is None or event_type is None or event_type in sub.event_types
            if not sub.enabled or not takes:
                continue
            worker = self._worker(sub.id)
            if worker is not None:
                worker.tests.append(record)
                worker.wake.set()
            count += 1
        return count

    # --- delivery ---------------------------------------------------------------------------------
    def _on_history(self, view: LogView) -> None:
        for worker in self._workers.values():
            worker.wake.set()

    def _worker(self, sub_id: str) -> _Worker | None:
        """The subscription's worker, started when there is none; None while not delivering (a service
        never started: an app without a server, as in the unit tests)."""
        if not self.running:
            return None
        worker = self._workers.get(sub_id)
        if worker is None or worker.task.done():
            worker = self._workers[sub_id] = _Worker(self, sub_id)
        return worker

    def poster(self) -> Poster:
        if self._poster is None:
            if self._make_poster is not None:
                self._poster = self._make_poster(self.allow)
            else:
                from vmbmc.redfish.poster import Poster  # aiohttp: loaded once there is something to send

                self._poster = Poster(self.allow)
        return self._poster

    def advance(self, sub_id: str, cursor: Cursor, *, persist: bool) -> None:
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            return
        self.subscriptions[sub_id] = sub.with_cursor(cursor)
        if persist:
            self._persist(sub_id)

    def _persist(self, sub_id: str) -> None:
        """Write the subscription's record soon, off the delivery path; writes of one key never overlap,
        and one written meanwhile is written once more."""
        if sub_id in self._dirty:
            return
        self._dirty.add(sub_id)
        self._spawn(self._write(sub_id))

    async def _write(self, sub_id: str) -> None:
        async with self._writes[sub_id]:
            self._dirty.discard(sub_id)
            sub = self.subscriptions.get(sub_id)
            if sub is None:  # deleted meanwhile: never written back
                return
            try:
                await self.store.put(sub_id, sub.to_record())
            except BackendUnavailable as err:  # the next delivery writes it; a restart may send it again
                log.warning("delivery cursor not stored",
                            extra={"subscription": sub_id, "error": err.message})

    async def exhausted(self, sub: Subscription) -> None:
        """Every retry failed: the subscription's policy decides."""
        if sub.retry_policy == "SuspendRetries":
            log.warning("event subscription suspended after failed deliveries",
                        extra={"subscription": sub.id, "destination": _where(sub)})
            new = replace(sub, enabled=False)
            self.subscriptions[sub.id] = new
            self._persist(sub.id)
            return
        log.warning("event subscription terminated after failed deliveries",
                    extra={"subscription": sub.id, "destination": _where(sub)})
        self._workers.pop(sub.id, None)
        if self.subscriptions.pop(sub.id, None) is None:
            return
        async with self._writes[sub.id]:
            try:
                await self.store.remove(sub.id)
            except BackendUnavailable as err:  # a restart finds it again and tries once more
                log.warning("terminated subscription not removed from the store",
                            extra={"subscription": sub.id, "error": err.message})


def _where(sub: Subscription) -> str:
    """The destination's host and port for the log (never its path or query, which may hold a token)."""
    _, host, port = destination_parts(sub.destination)
    return f"{host}:{port}"


class _Worker:
    """Delivers one subscription's events, one at a time, in order."""

    def __init__(self, service: EventService, sub_id: str) -> None:
        self.service = service
        self.sub_id = sub_id
        self.wake = asyncio.Event()
        self.wake.set()  # look at once: catch up on what was recorded since the cursor
        self.tests: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_TESTS)
        self.sent: collections.deque[str] = collections.deque(maxlen=REMEMBERED)
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"events:{sub_id}")

    async def run(self) -> None:
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while (item := self._next()) is not None:
                    event_id, records, entry = item
                    sub = self.service.subscriptions.get(self.sub_id)
                    if sub is None or not sub.enabled:
                        return
                    if not await self._deliver(sub, payload(sub, event_id, records), event_id):
                        await self.service.exhausted(sub)
                        return
                    self.sent.append(event_id)
                    if entry is not None:
                        self.service.advance(self.sub_id, cursor_at(entry), persist=True)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not end delivery silently
            log.exception("event delivery stopped", extra={"subscription": self.sub_id})

    def _next(self) -> tuple[str, list[dict[str, Any]], LogEntry | None] | None:
        """The next event to send: a test event first, else the next recorded entry the subscription
        wants (entries it filters out move its cursor without a POST)."""
        sub = self.service.subscriptions.get(self.sub_id)
        if sub is None or not sub.enabled:
            return None
        if self.tests:
            record = self.tests.popleft()
            return str(record["EventId"]), [record], None
        inv = self.service.machine.inventory()
        for entry in pending(self.service.machine.history(), sub.cursor):
            said = entry_message(inv, entry)
            if entry.id in self.sent or not sub.wants(said.message_id, said.resource_type):
                self.service.advance(self.sub_id, cursor_at(entry), persist=False)
                continue
            return entry.id, [event_record(inv, entry)], entry
        return None

    async def _deliver(self, sub: Subscription, body: bytes, event_id: str) -> bool:
        """POST it, retried per the service's settings; False when every attempt failed."""
        settings = self.service.settings
        for attempt in range(settings.attempts + 1):
            if attempt:
                await asyncio.sleep(self.service.settings.interval)
                sub = self.service.subscriptions.get(self.sub_id, sub)
            try:
                status = await self.service.poster().post(sub, body)
            except egress.DeliveryFailed as err:
                log.warning("event delivery failed", extra={
                    "subscription": sub.id, "event_id": event_id, "destination": _where(sub),
                    "attempt": attempt + 1, "error": str(err),
                })
                continue
            log.info("event delivered",
                     extra={"subscription": sub.id, "event_id": event_id, "status": status})
            return True
        return False
