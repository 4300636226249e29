"""A watch cache: list, then watch, one resource in one namespace, kept in memory.

Reads (`get`, `objects`) are plain dict lookups, without an API call; everything runs on the hub's loop.
The cache re-lists on 410 Gone, and survives API outages: it keeps the last known objects, marks itself
`stale` and keeps retrying with backoff; `age()` says how long ago the API server last confirmed it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from vmbmc.k8s.client import WATCH_OPEN, ApiClient, ApiError

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any] | None, dict[str, Any] | None], None]  # (old, new), on the loop

WATCH_TIMEOUT_SECONDS = 290
BACKOFF_START, BACKOFF_MAX = 0.2, 5.0


RECENT_VERSIONS = 32  # resourceVersions remembered per object, to recognise our own writes


class OwnWrites:
    """Our own writes' answers, newer than the cache until the watch delivers them.

    resourceVersions are opaque strings (only the API server may order them), so "the cache has caught
    up" is decided by the watch order alone: the cache has delivered that very version (any later event
    comes after it), or a list that began after the write has completed."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self._mine: dict[str, tuple[dict[str, Any], int]] = {}

    def note(self, obj: dict[str, Any]) -> None:
        self._mine[obj["metadata"]["name"]] = (obj, self.informer.lists_started)

    def current(self, name: str) -> dict[str, Any] | None:
        """The newest version we know: our own write until the cache has caught up, else the cache's.
        None when the cache has no such object (deleted: our writes are forgotten too)."""
        cached = self.informer.get(name)
        mine = self._mine.get(name)
        if cached is None or mine is None:
            self._mine.pop(name, None)
            return cached
        obj, lists = mine
        version = str(obj["metadata"].get("resourceVersion") or "")
        if self.informer.delivered(name, version) or self.informer.lists_done > lists:
            del self._mine[name]
            return cached
        return obj


class Informer:
    def __init__(self, api: ApiClient, path: str, *, field_selector: str | None = None) -> None:
        self.api = api
        self.path = path
        self.field_selector = field_selector
        self.objects: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()  # set after the first successful list
        self.first_result = asyncio.Event()  # set after the first list, successful or not
        self.last_error: ApiError | None = None
        self.stale = False
        self.connected = False
        self._confirmed = 0.0  # monotonic time the API last confirmed the cache
        self._listeners: dict[str, list[Listener]] = {}
        self._task: asyncio.Task[None] | None = None
        self.refcount = 0
        self._recent: dict[str, collections.deque[str]] = {}  # resourceVersions delivered, per object
        self.lists_started = 0  # lists begun; a list begun after a write returns it (or newer)
        self.lists_done = 0  # the number of the last list begun that has completed

    def delivered(self, name: str, version: str) -> bool:
        """The cache has held this version of `name` (recently): it is at least as new as that."""
        return version in self._recent.get(name, ())

    # --- reads -----------------------------------------------------------------
    def get(self, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)

    def age(self) -> float:
        if self.connected and not self.stale:
            return 0.0
        return time.monotonic() - self._confirmed if self._confirmed else float("inf")

    # --- listeners (loop) -------------------------------------------------------------------
    def subscribe(self, name: str, listener: Listener) -> None:
        self._listeners.setdefault(name, []).append(listener)

    def unsubscribe(self, name: str, listener: Listener) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._listeners[name].remove(listener)

    def _notify(self, name: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for listener in list(self._listeners.get(name, ())):
            try:
                listener(old, new)
            except Exception:
                log.exception("cache listener failed", extra={"path": self.path, "object": name})

    def _set(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        old = self.objects.get(name)
        self.objects[name] = obj
        recent = self._recent.setdefault(name, collections.deque(maxlen=RECENT_VERSIONS))
        recent.append(str(obj["metadata"].get("resourceVersion") or ""))
        self._notify(name, old, obj)

    def _drop(self, name: str) -> None:
        old = self.objects.pop(name, None)
        self._recent.pop(name, None)
        if old is not None:
            self._notify(name, old, None)

    # --- the list/watch loop ----------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"informer {self.path}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _params(self) -> dict[str, str]:
        return {"fieldSelector": self.field_selector} if self.field_selector else {}

    async def _list(self) -> str:
        self.lists_started += 1
        number = self.lists_started
        body = await self.api.request("GET", self.path, params=self._params(), retry=False)
        items = {o["metadata"]["name"]: o for o in body.get("items") or []}
        for name in [n for n in self.objects if n not in items]:
            self._drop(name)
        for obj in items.values():
            # a listed item carries no kind/apiVersion; keep them for whoever reads the cache
            obj.setdefault("kind", str(body.get("kind", "")).removesuffix("List"))
            obj.setdefault("apiVersion", body.get("apiVersion", ""))
            if obj != self.objects.get(obj["metadata"]["name"]):
                self._set(obj)
        self._confirmed = time.monotonic()
        self.lists_done = number
        self.synced.set()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def _run(self) -> None:
        rv: str | None = None
        backoff = BACKOFF_START
        while True:
            try:
                if rv is None:
                    rv = await self._list()
                    self.last_error = None
                    self.first_result.set()
                params = {
                    **self._params(),
                    "resourceVersion": rv,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS),
                }
                async for event in self.api.watch(self.path, params):
                    rv = self._apply(event, rv)
                    if rv is None:  # 410 Gone: re-list
                        break
                    if not self.connected or self.stale:
                        log.info("watch (re)connected", extra={"path": self.path})
                    self.connected, self.stale = True, False
                    self._confirmed = time.monotonic()
                    backoff = BACKOFF_START
            except asyncio.CancelledError:
                raise
            except ApiError as err:
                if err.code == 410:
                    rv = None
                    continue
                self.last_error = err
                self.first_result.set()
                if not self.stale:
                    log.warning(
                        "watch broken; serving the last known state",
                        extra={"path": self.path, "code": err.code, "error": err.message},
                    )
                self.connected, self.stale = False, True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            except Exception:
                log.exception("watch loop error", extra={"path": self.path})
                self.connected, self.stale = False, True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _apply(self, event: dict[str, Any], rv: str) -> str | None:
        etype = event.get("type")
        obj = event.get("object") or {}
        if etype == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                return None
            raise ApiError(code, str(obj.get("reason") or ""), str(obj.get("message") or ""), obj)
        new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
        if etype in ("BOOKMARK", WATCH_OPEN):
            return new_rv
        if etype in ("ADDED", "MODIFIED"):
            self._set(obj)
        elif etype == "DELETED":
            self._drop(obj["metadata"]["name"])
        return new_rv
