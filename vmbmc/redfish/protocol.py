"""What uvicorn runs for each accepted Redfish connection (`uvicorn.Config(http=protocol_factory(...))`).

Our own `asyncio.Protocol` sits between the socket and uvicorn's h11 protocol, through public APIs
only: it admits the connection before anything else (vmbmc.redfish.connections), does TLS itself
with `loop.start_tls(..., ssl_handshake_timeout=...)` (uvicorn's own TLS has no handshake deadline and
would admit a connection only after its handshake), tells the guard when bytes arrive, and hands
uvicorn's protocol the connection through the `asyncio.Protocol` interface alone. uvicorn's
protocol is composed, not subclassed: it is created with the keywords uvicorn gives every
`Config(http=...)` protocol, and nothing of it is read or overridden.

HTTP that h11 cannot parse is answered by uvicorn while no request is in the app; the `_Tap` that
uvicorn writes through replaces that answer with a Redfish JSON 400 carrying the headers every
answer carries (`Connection: close`), and the guard logs it once per client address per minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from vmbmc.redfish.connections import Connection, ConnectionGuard
from vmbmc.redfish.errors import JSON_TYPE
from vmbmc.redfish.middleware import COMMON_HEADERS
from vmbmc.redfish.registry import message

# uvicorn's per-connection warning for malformed HTTP is replaced by the guard's rate-limited line.
logging.getLogger("uvicorn.error").addFilter(
    lambda record: record.getMessage() != "Invalid HTTP request received.")


def bad_request_body() -> bytes:
    msg = message("GeneralError", resolution="Send a well-formed HTTP/1.1 request.")
    error = {"error": {"code": msg["MessageId"], "message": "The request is not well-formed HTTP.",
                       "@Message.ExtendedInfo": [msg]}}
    return json.dumps(error, separators=(",", ":")).encode()


def _bad_request() -> bytes:
    """The whole 400 answer, serialized once by h11 (a server connection needs a request first)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: bmc\r\n\r\n")
    conn.next_event()
    body = bad_request_body()
    headers = [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *COMMON_HEADERS]
    parts = (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
             h11.EndOfMessage())
    return b"".join(conn.send(part) or b"" for part in parts)


BAD_REQUEST = _bad_request()


class _Tap(asyncio.Transport):
    """The transport uvicorn's protocol writes through: the real one, except for the answer uvicorn
    writes on its own (no request in the app: HTTP it could not parse), which becomes ours."""

    def __init__(self, transport: asyncio.Transport, conn: Connection, guard: ConnectionGuard) -> None:
        super().__init__()
        self._transport, self._conn, self._guard = transport, conn, guard
        self._replaced = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._conn.in_app:
            self._transport.write(data)
        elif not self._replaced:  # the rest of uvicorn's own answer is dropped
            self._replaced = True
            self._guard.malformed += 1
            self._guard.notes.note(self._conn.client, "malformed HTTP request")
            self._transport.write(BAD_REQUEST)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()


class GuardedConnection(asyncio.Protocol):
    """One accepted connection: admission, TLS with a deadline, then uvicorn's h11 protocol."""

    def __init__(self, guard: ConnectionGuard, context: ssl.SSLContext | None,
                 http: Callable[[], asyncio.Protocol]) -> None:
        self._guard, self._context, self._new_http = guard, context, http
        self._http: asyncio.Protocol = None  # type: ignore[assignment]  # made once the connection is open
        self._conn: Connection | None = None
        self._tap: _Tap | None = None
        self._handshake: asyncio.Task[None] | None = None
        # What the TLS layer decrypted between the handshake's end and start_tls returning to us
        self._early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self._conn = self._guard.admit((str(peer[0]), int(peer[1])) if peer else ("unknown", 0), transport)
        if self._conn is None:
            return
        if self._context is None:
            self._open(transport)
            return
        transport.pause_reading()  # the ClientHello is for the TLS layer that start_tls puts in between
        self._handshake = asyncio.get_running_loop().create_task(self._start_tls(transport, self._conn))

    async def _start_tls(self, transport: asyncio.Transport, conn: Connection) -> None:
        loop, limit = asyncio.get_running_loop(), self._guard.limits.tls_handshake
        if transport.is_closing():  # evicted before its turn came: no TLS layer (256 KiB) for it
            self._guard.release(conn)
            return
        started = loop.time()
        try:
            tls = await loop.start_tls(transport, self, self._context,  # type: ignore[arg-type]
                                       server_side=True, ssl_handshake_timeout=limit)
        except (OSError, ssl.SSLError, EOFError):  # failed, timed out, evicted, or the client left
            if loop.time() - started >= limit:
                self._guard.timed_out += 1
                self._guard.notes.note(conn.client, "closed a stalled connection: TLS handshake not finished")
            self._guard.release(conn)
            return
        if tls is None or tls.is_closing():
            self._guard.release(conn)
            return
        self._open(tls)

    def _open(self, transport: asyncio.Transport) -> None:
        assert self._conn is not None
        self._conn.opened()
        self._tap = _Tap(transport, self._conn, self._guard)
        self._http = self._new_http()
        self._http.connection_made(self._tap)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._tap is None:  # TLS is up, start_tls has not returned yet: keep it for uvicorn
            self._early.append(data)
            return
        self._conn.bytes_arrived()  # type: ignore[union-attr]
        self._http.data_received(data)

    def eof_received(self) -> bool | None:
        return self._http.eof_received() if self._tap is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._guard.release(self._conn)
        if self._tap is not None:
            self._http.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._tap is not None:
            self._http.pause_writing()

    def resume_writing(self) -> None:
        if self._tap is not None:
            self._http.resume_writing()


def protocol_factory(guard: ConnectionGuard, context: ssl.SSLContext | None
                     ) -> Callable[..., asyncio.Protocol]:
    """What uvicorn calls for each accepted connection (`Config(http=...)`), with the keywords it
    gives any such protocol; they go on unchanged to its own h11 protocol."""

    def create(config: Config, server_state: Any, app_state: dict[str, Any],
               _loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
        def http() -> asyncio.Protocol:
            return H11Protocol(config=config, server_state=server_state, app_state=app_state, _loop=_loop)

        return GuardedConnection(guard, context, http)

    return create
