"""A minimal HTTP/1.1 client on asyncio streams, for the Kubernetes API only.

Why not aiohttp: importing it costs ~16 MiB of RSS in every kbmc pod, and the API server needs little:
JSON bodies with a Content-Length, chunked watch streams, keep-alive, TLS. What it does:

- one origin (scheme, host, port) per client; a pool of idle keep-alive connections; a connection is
  pooled again only after its response was read to the end (a cancelled request closes it); at most
  64 requests in flight, the rest wait (watch streams are not counted);
- a request on a pooled connection that the server had already closed (no byte of an answer) is sent
  again once on a new connection, for every method: the server never saw it;
- bodies: Content-Length, chunked, or until the server closes; no compression is asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 5.0
MAX_IDLE = 64  # idle connections kept per client (as many as requests in flight: no TLS handshake per burst)
MAX_REQUESTS = 64  # requests in flight per client (watches not counted: they last), as aiohttp's default
MAX_LINE = 64 * 1024  # status and header lines
MAX_HEADERS = 200


class HttpError(Exception):
    """No usable answer: connection refused or lost, TLS failure, malformed response, timeout."""


class ConnectError(HttpError):
    """No connection: the request was never sent."""


class QueueTimeout(ConnectError):
    """The caller's time ran out while its request waited for a free slot: never sent."""


class _StaleConnection(HttpError):
    """A pooled connection the server had closed before our request: safe to send again."""


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes = b""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reused = False

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class HttpClient:
    def __init__(
        self, base_url: str, ssl_context: ssl.SSLContext | None = None, server_name: str | None = None
    ):
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.https = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        self._host_header = f"[{self.host}]" if ":" in self.host else self.host
        if url.port:
            self._host_header += f":{url.port}"
        self.ssl_context = ssl_context if self.https else None
        if self.https and self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        self.server_name = server_name
        self._idle: list[_Conn] = []
        self._open: set[_Conn] = set()
        self._slots = asyncio.Semaphore(MAX_REQUESTS)

    # --- connections ---------------------------------------------------------------------------
    async def _connect(self) -> _Conn:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=(self.server_name or self.host) if self.https else None,
                    limit=MAX_LINE,
                )
        except TimeoutError as err:
            raise ConnectError(f"connect to {self.host}:{self.port}: timed out") from err
        except (OSError, ssl.SSLError) as err:
            raise ConnectError(f"connect to {self.host}:{self.port}: {err}") from err
        conn = _Conn(reader, writer)
        self._open.add(conn)
        return conn

    async def _acquire(self) -> _Conn:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            self._discard(conn)
        return await self._connect()

    def _release(self, conn: _Conn) -> None:
        if conn.usable() and len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: _Conn) -> None:
        self._open.discard(conn)
        conn.close()

    def set_ssl_context(self, ctx: ssl.SSLContext) -> None:
        """New TLS settings (a renewed client certificate): new connections use them; open watches
        keep theirs until they end."""
        self.ssl_context = ctx
        for conn in self._idle:
            self._discard(conn)
        self._idle.clear()

    async def close(self) -> None:
        for conn in list(self._open):
            self._discard(conn)
        self._idle.clear()

    # --- requests ------------------------------------------------------------------------------
    def _head(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> bytes:
        lines = [
            f"{method} {self.prefix}{target} HTTP/1.1",
            f"Host: {self._host_header}",
            "User-Agent: vmbmc",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send(self, conn: _Conn, head: bytes, body: bytes | None) -> Response:
        """Write the request and read the status line and headers."""
        try:
            conn.writer.write(head + (body or b""))
            await conn.writer.drain()
            status_line = await conn.reader.readline()
        except (OSError, ssl.SSLError) as err:
            if conn.reused:
                raise _StaleConnection(str(err)) from err
            raise HttpError(f"{type(err).__name__}: {err}") from err
        if not status_line:
            if conn.reused:
                raise _StaleConnection("server closed the connection")
            raise HttpError("server closed the connection without an answer")
        return await self._read_head(conn, status_line)

    async def _read_head(self, conn: _Conn, status_line: bytes) -> Response:
        try:
            version, code, *reason = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            if not version.startswith("HTTP/1."):
                raise ValueError(version)
            status = int(code)
            headers: dict[str, str] = {}
            for _ in range(MAX_HEADERS):
                line = (await conn.reader.readline()).decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                name, _, value = line.partition(":")
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
            else:
                raise ValueError("too many headers")
        except (ValueError, OSError, ssl.SSLError, asyncio.LimitOverrunError) as err:
            raise HttpError(f"malformed answer: {err}") from err
        return Response(status, reason[0] if reason else "", headers)

    async def _exchange(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[_Conn, Response]:
        head = self._head(method, target, headers, body)
        conn = await self._acquire()
        try:
            return conn, await self._send(conn, head, body)
        except _StaleConnection:
            self._discard(conn)
        except BaseException:
            self._discard(conn)
            raise
        conn = await self._connect()  # once, on a fresh connection
        try:
            return conn, await self._send(conn, head, body)
        except BaseException:
            self._discard(conn)
            raise

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None = None,
        *,
        timeout: float | None = None,
        wait_in_timeout: bool = True,
    ) -> Response:
        """One request; the whole answer. `target`: path and query. Raises HttpError.

        `timeout` covers the exchange, and the wait for a free slot too when `wait_in_timeout` (a caller
        whose deadline is absolute: nothing may be sent after it). A timeout in that wait raises
        QueueTimeout: the request never left this process."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline if wait_in_timeout else None):
                await self._slots.acquire()
        except TimeoutError as err:
            raise QueueTimeout(f"no free request slot within {timeout} s: not sent") from err
        if deadline is not None and not wait_in_timeout:
            deadline = loop.time() + timeout  # type: ignore[operator]
        try:
            async with asyncio.timeout_at(deadline):
                return await self._request(method, target, headers, body)
        except TimeoutError as err:
            raise HttpError(f"no answer within {timeout} s") from err
        finally:
            self._slots.release()

    async def _request(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> Response:
        conn, resp = await self._exchange(method, target, headers, body)
        try:
            chunks = [c async for c in _body(conn.reader, resp, method)]
        except BaseException:
            self._discard(conn)
            raise
        resp.body = b"".join(chunks)
        if _keep_alive(resp):
            self._release(conn)
        else:
            self._discard(conn)
        return resp

    @contextlib.asynccontextmanager
    async def stream(
        self, target: str, headers: dict[str, str]
    ) -> AsyncIterator[tuple[Response, AsyncIterator[bytes]]]:
        """A GET whose body is read as it arrives (a watch). The connection is closed afterwards: a watch
        ends when the server ends it or the caller stops reading."""
        conn, resp = await self._exchange("GET", target, headers, None)
        try:
            yield resp, _body(conn.reader, resp, "GET")
        finally:
            self._discard(conn)

    async def upgrade(
        self, target: str, headers: dict[str, str]
    ) -> tuple[Response, asyncio.StreamReader | None, asyncio.StreamWriter | None]:
        """A GET asking to switch protocols (a WebSocket) on a connection of its own. On 101 the
        answer and the connection's streams, now the caller's to close; otherwise the whole answer."""
        conn = await self._connect()
        try:
            resp = await self._send(conn, self._head("GET", target, headers, None), None)
            if resp.status == 101:
                self._open.discard(conn)  # no longer HTTP: closing it is the caller's job
                return resp, conn.reader, conn.writer
            resp.body = b"".join([c async for c in _body(conn.reader, resp, "GET")])
            return resp, None, None
        finally:
            if conn in self._open:
                self._discard(conn)


def _keep_alive(resp: Response) -> bool:
    return "close" not in resp.headers.get("connection", "").lower()


async def _body(reader: asyncio.StreamReader, resp: Response, method: str) -> AsyncIterator[bytes]:
    """The response body in pieces as they arrive."""
    if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
        return
    try:
        if "chunked" in resp.headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await reader.readline()
                if not size_line:
                    raise HttpError("connection closed inside a chunked body")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while (await reader.readline()).strip():  # trailers, then the empty line
                        pass
                    return
                yield await reader.readexactly(size)
                await reader.readexactly(2)  # CRLF after the chunk
        elif "content-length" in resp.headers:
            remaining = int(resp.headers["content-length"])
            while remaining > 0:
                chunk = await reader.read(min(remaining, 1 << 16))
                if not chunk:
                    raise HttpError("connection closed inside the body")
                remaining -= len(chunk)
                yield chunk
        else:
            resp.headers["connection"] = "close"  # the body ends with the connection
            while chunk := await reader.read(1 << 16):
                yield chunk
    except (ValueError, OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
        raise HttpError(f"{type(err).__name__}: {err}") from err
