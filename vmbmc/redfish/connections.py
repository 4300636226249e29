"""The connections of one Redfish listener: admission, TLS with a deadline, read timeouts, and
answers to malformed HTTP (uvicorn's h11 protocol underneath).

A stalled or half-open connection must not cost a BMC its memory or its clients. So:

- at most `per_client` connections per client address and `total` in all. When the total is
  reached, a new connection evicts the oldest one that is not being served (still in its TLS
  handshake, idle, or sending a request), preferring the address holding the most; only when
  every connection is being served is the newcomer refused (closed at once);
- the TLS handshake must finish within `tls_handshake`, a request's headers within `header`
  seconds of its first byte (of the connection, for a new one), its body within `body` seconds of
  the headers; an idle keep-alive connection is closed after `keep_alive` seconds;
- TLS read buffers are 64 KiB instead of asyncio's 256 KiB, so the peak stays small, and when a
  burst of connections has closed the freed heap is handed back to the OS (`return_memory`);
- HTTP that h11 cannot parse but can still answer gets a Redfish JSON 400 with the headers every
  answer carries, and one log line per client address per minute.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import enum
import itertools
import json
import logging
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from vmbmc.ratelog import RateLimitedLog
from vmbmc.redfish.errors import JSON_TYPE
from vmbmc.redfish.middleware import COMMON_HEADERS
from vmbmc.redfish.registry import message

log = logging.getLogger(__name__)
# uvicorn's per-connection warnings ("Invalid HTTP request received.") are replaced by our rate-limited
# lines; its other messages keep their level.
_http_log = logging.getLogger("vmbmc.redfish.http")
_http_log.addFilter(lambda record: record.getMessage() != "Invalid HTTP request received.")


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


class _Conn:
    __slots__ = ("client", "key", "phase", "since", "transport")

    def __init__(self, key: int, client: str, transport: asyncio.BaseTransport) -> None:
        self.key, self.client, self.transport = key, client, transport
        self.phase, self.since = Phase.HANDSHAKE, time.monotonic()

    def set(self, phase: Phase) -> None:
        self.phase, self.since = phase, time.monotonic()


class ConnectionGuard:
    """Admission and bookkeeping for one listener (all on its event loop: no locks)."""

    GRACE = 1.0  # an address's newest connections are not its "most": honest bursts share one address

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._conns: dict[int, _Conn] = {}  # id(protocol) -> connection, oldest first
        self._per_client: dict[str, int] = {}
        self.refused = self.evicted = self.timed_out = self.malformed = 0
        self.notes = RateLimitedLog(log)
        self._high = 0  # most connections open since memory was last returned
        self._closed = 0  # connections closed since then

    def __len__(self) -> int:
        return len(self._conns)

    def admit(self, key: int, client: str, transport: asyncio.BaseTransport) -> _Conn | None:
        limits = self.limits
        if self._per_client.get(client, 0) >= limits.per_client:
            return self._refuse(client, transport, "connection refused: too many from this address")
        if len(self._conns) >= limits.total:
            victim = self._victim()
            if victim is None:
                return self._refuse(client, transport, "connection refused: every connection is in use")
            self.evicted += 1
            why = f"closed a connection that was {victim.phase.value} to admit another"
            self.notes.note(victim.client, why)
            self._drop(victim)
        conn = _Conn(key, client, transport)
        self._conns[key] = conn
        self._high = max(self._high, len(self._conns))
        self._per_client[client] = self._per_client.get(client, 0) + 1
        return conn

    def release(self, key: int) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            left = self._per_client[conn.client] - 1
            if left:
                self._per_client[conn.client] = left
            else:
                del self._per_client[conn.client]
            self._closed += 1
            burst_over = self._high >= 32 and len(self._conns) <= self._high // 4
            if burst_over or self._closed >= 128:  # also during a long churn at the cap
                self._high, self._closed = len(self._conns), 0
                return_memory()

    def close_all(self) -> None:
        for conn in list(self._conns.values()):
            conn.transport.abort()

    def _refuse(self, client: str, transport: asyncio.BaseTransport, why: str) -> None:
        self.refused += 1
        self.notes.note(client, why)
        transport.abort()
        return None

    def _victim(self) -> _Conn | None:
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

    def _drop(self, conn: _Conn) -> None:
        conn.transport.abort()  # connection_lost releases it too, later; the slot is needed now
        self.release(conn.key)


_keys = itertools.count(1)  # connection keys (ids of dead objects are reused)


def _malloc_trim() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_TRIM = _malloc_trim()


def return_memory() -> None:
    """Give freed heap pages back to the OS. Connection buffers (TLS, h11) are freed when a burst of
    connections closes, but glibc keeps the pages in its heap: RSS would stay at the burst's peak."""
    if _TRIM is not None:
        _TRIM(0)


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    host = str(peer[0]) if peer else "unknown"
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def bad_request_body() -> bytes:
    msg = message("GeneralError", resolution="Send a well-formed HTTP/1.1 request.")
    error = {"error": {"code": msg["MessageId"], "message": "The request is not well-formed HTTP.",
                       "@Message.ExtendedInfo": [msg]}}
    return json.dumps(error, separators=(",", ":")).encode()


class HttpProtocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines, admission bookkeeping and JSON 400s."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, guard: ConnectionGuard,
                 key: int | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.logger = _http_log
        self.guard = guard
        self.key = next(_keys) if key is None else key
        self.conn_record: _Conn | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._cycle_seen: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        record = self.guard._conns.get(self.key)
        if record is None:  # plain HTTP: admitted here
            record = self.guard.admit(self.key, _peer(transport), transport)
            if record is None:
                return
        self.conn_record = record
        record.set(Phase.IDLE)
        super().connection_made(transport)
        self._arm(self.guard.limits.header, "no request")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.release(self.key)
        if self.transport is not None:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        record = self.conn_record
        if record is not None and record.phase is Phase.IDLE:
            record.set(Phase.READING)
            if self._deadline is None:
                self._arm(self.guard.limits.header, "headers not received")
        super().data_received(data)
        cycle = self.cycle
        if cycle is None or cycle.response_complete or record is None:
            return
        if cycle is not self._cycle_seen:  # a new request's headers are in
            self._cycle_seen = cycle
            self._disarm()
            if cycle.more_body:
                self._arm(self.guard.limits.body, "body not received")
        if not cycle.more_body and record.phase is not Phase.SERVING:
            self._disarm()
            record.set(Phase.SERVING)

    def on_response_complete(self) -> None:
        if self.conn_record is not None:
            self.conn_record.set(Phase.IDLE)  # uvicorn arms its keep-alive timer
        self._disarm()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        self.guard.malformed += 1
        self.guard.notes.note(self.client[0] if self.client else "unknown", "malformed HTTP request")
        body = bad_request_body()
        headers = [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), *COMMON_HEADERS]
        try:
            out = self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request"))
            out = (out or b"") + (self.conn.send(h11.Data(data=body)) or b"")
            out += self.conn.send(h11.EndOfMessage()) or b""
            self.transport.write(out)
        except h11.LocalProtocolError:  # nothing can be answered any more on this connection
            pass
        self.transport.close()

    def _arm(self, seconds: float, why: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, why)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, why: str) -> None:
        self._deadline = None
        self.guard.timed_out += 1
        client = self.client[0] if self.client else "unknown"
        self.guard.notes.note(client, f"closed a stalled connection: {why}")
        self.transport.abort()


class _TlsProtocol(sslproto.SSLProtocol):
    """asyncio's TLS layer with a smaller read buffer, counted from the first byte (before the
    handshake), so half-open TLS connections are admitted and limited like any other."""

    max_size = 64 * 1024

    def __init__(self, loop: asyncio.AbstractEventLoop, app: HttpProtocol, context: ssl.SSLContext,
                 guard: ConnectionGuard) -> None:
        super().__init__(loop, app, context, None, server_side=True,
                         ssl_handshake_timeout=guard.limits.tls_handshake)
        self.guard, self.key = guard, app.key

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.guard.admit(self.key, _peer(transport), transport) is None:
            return
        super().connection_made(transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.release(self.key)
        if getattr(self, "_transport", None) is not None:
            super().connection_lost(exc)  # type: ignore[arg-type]


def protocol_factory(
    guard: ConnectionGuard, context: ssl.SSLContext | None
) -> Callable[..., asyncio.Protocol]:
    """What uvicorn calls for each accepted connection (`Config(http=...)`)."""

    def create(config: Config, server_state: ServerState, app_state: dict[str, Any],
               _loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
        loop = _loop or asyncio.get_running_loop()
        if context is None:
            return HttpProtocol(config, server_state, app_state, loop, guard=guard)
        app = HttpProtocol(config, server_state, app_state, loop, guard=guard, key=next(_keys))
        return _TlsProtocol(loop, app, context, guard)

    return create
