"""The connections of one Redfish listener: admission, per-connection deadlines and counters.

A stalled or half-open connection must not cost a BMC its memory or its clients. So:

- at most `per_client` connections per client address and `total` in all. When the total is
  reached, a new connection evicts the oldest one that is not being served (still in its TLS
  handshake, idle, or sending a request), preferring the address holding the most; only when
  every connection is being served is the newcomer refused (closed at once);
- the TLS handshake must finish within `tls_handshake` (asyncio's own `ssl_handshake_timeout`), a
  request's headers within `header` seconds of its first byte (of the connection, for a new one),
  its body within `body` seconds of the headers; an idle keep-alive connection is closed after
  `keep_alive` seconds (uvicorn's `timeout_keep_alive`);
- when a burst of connections has closed, the freed heap is handed back to the OS (`return_memory`).

This module keeps the books; `vmbmc.redfish.protocol` feeds it from the transport (connections and
bytes) and `vmbmc.redfish.phases` from the ASGI side (a request's headers, body and answer).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import enum
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from vmbmc.ratelog import RateLimitedLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    tls_handshake: float = 10.0
    header: float = 10.0
    body: float = 30.0
    keep_alive: int = 15
    per_client: int = 16
    total: int = 64


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    IDLE = "idle"  # connected, no byte of a request yet
    READING = "reading"  # a request's headers or body are arriving
    SERVING = "serving"  # the app has the whole request


class Connection:
    """One admitted connection: where it is, since when, and its one pending deadline."""

    __slots__ = ("_guard", "_regraced", "_timer", "client", "in_app", "peer", "phase", "since", "transport")

    # A deadline that fires this late (s) found our own loop stalled (GC, a busy host), not the client:
    # the client gets the deadline again, once per connection, before it is judged.
    STALL = 1.0

    def __init__(self, guard: ConnectionGuard, peer: tuple[str, int], transport: asyncio.BaseTransport
                 ) -> None:
        self._guard, self.peer, self.transport = guard, peer, transport
        host = peer[0]  # an IPv4 client of a dual-stack listener counts as its IPv4 address
        self.client = host[7:] if host.startswith("::ffff:") and "." in host else host
        self.phase, self.since = Phase.HANDSHAKE, time.monotonic()
        self.in_app = False  # the app holds a request and has not finished its answer
        self._timer: asyncio.TimerHandle | None = None
        self._regraced = False  # a late deadline has been given again once

    def set(self, phase: Phase) -> None:
        self.phase, self.since = phase, time.monotonic()

    # --- the transport's side ---------------------------------------------------------------
    def opened(self) -> None:
        """Ready for HTTP (after the TLS handshake): the first request's headers are due."""
        self.set(Phase.IDLE)
        self.arm(self._guard.limits.header, "no request")

    def bytes_arrived(self) -> None:
        if self.phase is Phase.IDLE:
            self.set(Phase.READING)
            if self._timer is None:
                self.arm(self._guard.limits.header, "headers not received")

    # --- the app's side ----------------------------------------------------------------------
    def request_started(self, with_body: bool) -> None:
        self.in_app = True
        if with_body:
            self.set(Phase.READING)
            self.arm(self._guard.limits.body, "body not received")
        else:
            self.serving()

    def serving(self) -> None:
        """The app has the whole request, or answers without waiting for the rest."""
        if self.phase is not Phase.SERVING:
            self.disarm()
            self.set(Phase.SERVING)

    def answered(self) -> None:
        self.disarm()
        self.in_app = False
        self.set(Phase.IDLE)  # uvicorn arms its keep-alive timer

    # --- deadlines ---------------------------------------------------------------------------
    def arm(self, seconds: float, why: str) -> None:
        self.disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._expired, why, seconds, loop.time() + seconds)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, why: str, seconds: float, due: float) -> None:
        self._timer = None
        if asyncio.get_running_loop().time() - due > self.STALL and not self._regraced:
            # The bytes that would have met the deadline may be waiting, unread, behind the stall.
            self._regraced = True
            self.arm(seconds, why)
            return
        self._guard.timed_out += 1
        self._guard.notes.note(self.client, f"closed a stalled connection: {why}")
        self.transport.abort()


class ConnectionGuard:
    """Admission and bookkeeping for one listener (all on its event loop: no locks)."""

    GRACE = 1.0  # an address's newest connections are not its "most": honest bursts share one address
    TRIM_DELAY = 0.5  # a closed connection's objects are freed after its connection_lost, not in it

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._conns: dict[tuple[str, int], Connection] = {}  # by peer address, oldest first
        self._per_client: dict[str, int] = {}
        self.refused = self.evicted = self.timed_out = self.malformed = 0
        self.notes = RateLimitedLog(log)
        self._high = 0  # most connections open since memory was last returned
        self._closed = 0  # connections closed since then
        self._trim: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._conns)

    def find(self, peer: tuple[str, int] | None) -> Connection | None:
        """The connection an ASGI request came on (its scope's `client`)."""
        return None if peer is None else self._conns.get((str(peer[0]), int(peer[1])))

    def admit(self, peer: tuple[str, int], transport: asyncio.BaseTransport) -> Connection | None:
        limits, conn = self.limits, Connection(self, peer, transport)
        client = conn.client
        stale = self._conns.get(peer)
        if stale is not None:  # its connection_lost is still to come, and the peer's port is reused
            self.release(stale)
        if self._per_client.get(client, 0) >= limits.per_client:
            return self._refuse(client, transport, "connection refused: too many from this address")
        if len(self._conns) >= limits.total:
            victim = self._victim()
            if victim is None:
                return self._refuse(client, transport, "connection refused: every connection is in use")
            self.evicted += 1
            why = f"closed a connection that was {victim.phase.value} to admit another"
            self.notes.note(victim.client, why)
            victim.transport.abort()  # its connection_lost releases it too, later; the slot is needed now
            self.release(victim)
        self._conns[peer] = conn
        self._high = max(self._high, len(self._conns))
        self._per_client[client] = self._per_client.get(client, 0) + 1
        return conn

    def release(self, conn: Connection) -> None:
        conn.disarm()
        if self._conns.get(conn.peer) is not conn:
            return  # released already (evicted, or the TLS handshake failed)
        del self._conns[conn.peer]
        left = self._per_client[conn.client] - 1
        if left:
            self._per_client[conn.client] = left
        else:
            del self._per_client[conn.client]
        self._closed += 1
        burst_over = self._high >= 32 and len(self._conns) <= self._high // 4
        if (burst_over or self._closed >= 128) and self._trim is None:  # also during a long churn at the cap
            self._high, self._closed = len(self._conns), 0
            self._trim = asyncio.get_running_loop().call_later(self.TRIM_DELAY, self._return_memory)

    def _return_memory(self) -> None:
        self._trim = None
        return_memory()

    def abort_waiting(self) -> None:
        """Close every connection that is not being served (the server is stopping)."""
        for conn in list(self._conns.values()):
            if conn.phase is not Phase.SERVING:
                conn.transport.abort()

    def close_all(self) -> None:
        for conn in list(self._conns.values()):
            conn.transport.abort()
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None

    def _refuse(self, client: str, transport: asyncio.BaseTransport, why: str) -> None:
        self.refused += 1
        self.notes.note(client, why)
        transport.abort()
        return None

    def _victim(self) -> Connection | None:
        waiting = [c for c in self._conns.values() if c.phase is not Phase.SERVING]
        if not waiting:
            return None
        held: dict[str, int] = {}
        for c in waiting:
            held[c.client] = held.get(c.client, 0) + 1
        top = max(held.values())
        now = time.monotonic()
        if top > 1:
            mine = [c for c in waiting if held[c.client] == top and now - c.since > self.GRACE]
            if mine:
                return min(mine, key=lambda c: c.since)
        return min(waiting, key=lambda c: c.since)


def _malloc_trim() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_TRIM = _malloc_trim()


def return_memory() -> None:
    """Give freed heap pages back to the OS. A burst of connections leaves their buffers (TLS, h11)
    in reference cycles that only a full collection frees, and glibc keeps freed pages in its heap:
    without both, RSS would stay at the burst's peak."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
