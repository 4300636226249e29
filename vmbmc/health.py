"""/healthz, /readyz and /metrics on a health port (asyncio, on the caller's loop): the controller's and
the kbmc's (`--health-port`; a kbmc is ready once its VM watch has synced).

A few lines of HTTP/1.1 on asyncio streams rather than an HTTP framework: the kbmc runs once per VM, and
aiohttp's server alone costs it ~16 MiB of RSS; kubelet probes and Prometheus scrapes need only a GET
and an answer. One request per connection (the answer says `Connection: close`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

# prometheus_client's CONTENT_TYPE_LATEST, without importing it for a constant
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT = 10.0  # a client has this long to send its request head
MAX_HEAD_LINES = 100
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class HealthServer:
    def __init__(
        self,
        render_metrics: Callable[[], bytes],
        address: str,
        port: int,
        *,
        ready_check: Callable[[], bool] | None = None,
    ) -> None:
        """`ready_check`, when given, decides /readyz; otherwise the `ready` attribute does."""
        self.render_metrics = render_metrics
        self.ready_check = ready_check
        self.address, self.port = address, port
        self.ready = False  # set while kopf runs (after leadership, if elected)
        self.ready_reason = "starting"
        self.alive = True
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.address or None, self.port)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request."""
        route = path.split("?", 1)[0]
        if route not in ("/healthz", "/readyz", "/metrics"):
            return 404, "text/plain", b"404: Not Found"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"405: Method Not Allowed"
        if route == "/healthz":
            return (200, "text/plain", b"ok\n") if self.alive else (503, "text/plain", b"stopping\n")
        if route == "/readyz":
            if self.ready if self.ready_check is None else self.ready_check():
                return 200, "text/plain", b"ok\n"
            return 503, "text/plain", f"not ready: {self.ready_reason}\n".encode()
        return 200, METRICS_CONTENT_TYPE, self.render_metrics()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                request_line = (await reader.readline()).decode("latin-1").split()
                for _ in range(MAX_HEAD_LINES):  # headers: nothing here depends on them
                    if (await reader.readline()).strip() == b"":
                        break
            if len(request_line) == 3 and request_line[2].startswith("HTTP/"):
                status, content_type, body = self.answer(request_line[0], request_line[1])
            else:
                status, content_type, body = 400, "text/plain", b"400: Bad Request"
            head = (
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if request_line[:1] == ["HEAD"] else body))
            await writer.drain()
        except (TimeoutError, OSError, ValueError):
            pass  # a client that went away or never asked: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
