"""/healthz, /readyz and /metrics on a health port, for the controller and the kbmc (`--health-port`;
a kbmc is ready once its VM watch has synced).

uvicorn serves them on the caller's loop (the server the Redfish front end ships with; aiohttp's would
cost ~12 MiB). The three fixed paths are a small ASGI app (starlette's router would add ~1 MiB to every
kbmc without Redfish); /metrics is prometheus_client's own ASGI app (content negotiation, OpenMetrics,
gzip). Answers:

| path | 200 | 503 |
|---|---|---|
| `/healthz` | `ok` while running | `stopping` once the process is shutting down |
| `/readyz` | `ok` once ready | `not ready: <reason>` |
| `/metrics` | the registry, in the format the scraper asks for | |

Other paths 404, other methods than GET and HEAD 405.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import uvicorn
from prometheus_client import make_asgi_app
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # a connection older than this is closed once it is idle (probes take ms)
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_METHODS = ("GET", "HEAD")


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The embedding process owns SIGINT/SIGTERM; uvicorn would otherwise replace its handlers.
        yield


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; `::` or "" is dual-stack (IPv6 and IPv4) where the host has IPv6."""
    if host in ("", "::") and socket.has_dualstack_ipv6():
        family, host = socket.AF_INET6, "::"
    else:
        family, host = (socket.AF_INET6 if ":" in host else socket.AF_INET), host or "0.0.0.0"
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host.strip("[]"), port))
        sock.listen(64)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class HealthServer:
    def __init__(
        self,
        registry: Collector,
        address: str,
        port: int,
        *,
        ready_check: Callable[[], bool] | None = None,
    ) -> None:
        """`registry`: what /metrics serves. `ready_check`, when given, decides /readyz; otherwise the
        `ready` attribute does."""
        self.ready_check = ready_check
        self.address, self.port = address, port
        self.ready = False  # set while kopf runs (after leadership, if elected)
        self.ready_reason = "starting"
        self.alive = True
        self._metrics = make_asgi_app(registry)
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sock: socket.socket | None = None

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app uvicorn serves (HTTP only: no lifespan, no WebSocket)."""
        path, method = scope["path"], scope["method"]
        if path == "/metrics" and method in _METHODS:
            await self._metrics(scope, receive, send)
            return
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        if path not in ("/healthz", "/readyz", "/metrics"):
            status, text = 404, "Not Found\n"
        elif method not in _METHODS:
            status, text = 405, "Method Not Allowed\n"
            headers.append((b"allow", b"GET, HEAD"))
        elif path == "/healthz":
            status, text = (200, "ok\n") if self.alive else (503, "stopping\n")
        elif self.ready if self.ready_check is None else self.ready_check():
            status, text = 200, "ok\n"
        else:
            status, text = 503, f"not ready: {self.ready_reason}\n"
        body = text.encode()
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})  # uvicorn leaves it out for HEAD

    async def start(self) -> int:
        """Listen (a busy port raises OSError here) and serve on the running loop; returns the port."""
        self._sock = _listen(self.address, self.port)
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            http="h11",
            interface="asgi3",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=5,
            h11_max_incomplete_event_size=16 * 1024,
            timeout_graceful_shutdown=1,
        )
        server = self._server = _EmbeddedServer(config)
        serving = asyncio.ensure_future(server.serve(sockets=[self._sock]))
        self._tasks = [serving, asyncio.ensure_future(self._close_stalled(server))]
        async with asyncio.timeout(_START_TIMEOUT):
            while not server.started:
                if serving.done():
                    await self.stop()
                    raise RuntimeError("the health server did not start")
                await asyncio.sleep(0.01)
        return self.port

    async def _close_stalled(self, server: uvicorn.Server) -> None:
        """Close connections that stay beyond REQUEST_TIMEOUT (one that never sends a request would
        otherwise stay open: uvicorn's keep-alive timeout starts after a response). `shutdown()` is how
        uvicorn's Server ends a connection: at once when idle, after its response otherwise."""
        seen: set[object] = set()
        while True:
            await asyncio.sleep(REQUEST_TIMEOUT)
            current = set(server.server_state.connections)
            for connection in current & seen:
                connection.shutdown()
            seen = current

    async def stop(self) -> None:
        """Stop listening and close connections; safe to call more than once."""
        server, self._server = self._server, None
        tasks, self._tasks = self._tasks, []
        if server is not None:
            server.should_exit = True
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(tasks[0]), _STOP_TIMEOUT)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._sock is not None:
            self._sock.close()
            self._sock = None
