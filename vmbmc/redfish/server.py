"""Run the Redfish app of one BMC with uvicorn: HTTPS by default, plain HTTP on request.

`serve()` starts a listener as a task on the running loop (the kbmc process, the demo and the tests
run many such servers on one loop) and returns once it accepts connections; `await server.stop()`
ends it. uvicorn's own signal handlers are not installed then: SIGINT/SIGTERM belong to the
embedding process. `run()` is the standalone form: it blocks and stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import ssl
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from vmbmc.redfish.connections import ConnectionGuard, ConnectionLimits
from vmbmc.redfish.phases import RequestPhases
from vmbmc.redfish.protocol import protocol_factory
from vmbmc.redfish.tls import self_signed_certificate_apart

log = logging.getLogger(__name__)

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_IDLE_CLOSE = 0.5
#: TLS 1.2 suites: forward-secret AEAD only (uvicorn's default "TLSv1" also allows CBC/SHA-1 suites).
#: Works with ECDSA (our generated certificate) and RSA certificates; TLS 1.3 suites are unaffected.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The embedding process owns the signals; uvicorn would otherwise replace its handlers.
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and host in ("::", "[::]"):
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # also IPv4, like 0.0.0.0
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class RedfishServer:
    """One running listener. `port` is the bound port (useful with port 0)."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], sock: socket.socket,
                 https: bool, tls_dir: Path | None, guard: ConnectionGuard, events: Any = None) -> None:
        self._server = server
        self.events = events  # the app's EventService (vmbmc.redfish.eventservice), delivering while served
        self.guard = guard  # its connections: counts of refused, evicted, timed-out, malformed
        self._task = task
        self._sock = sock
        self._tls_dir = tls_dir
        self.https = https
        self.host, self.port = sock.getsockname()[:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}"

    @property
    def service_url(self) -> str:
        """The service root, e.g. for the demo's endpoints file: `https://127.0.0.1:8443/redfish/v1`."""
        return f"{self.url}/redfish/v1"

    async def stop(self) -> None:
        """Stop accepting, close connections (in-flight requests get up to 5 s), free the port; stop
        delivering events."""
        if self.events is not None:
            await self.events.stop()
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _IDLE_CLOSE)
        except TimeoutError:
            # Idle keep-alive TLS connections wait for the client's close_notify, which a client
            # in its keep-alive pool never sends: drop them, as a BMC reboot would.
            self.guard.abort_waiting()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _STOP_TIMEOUT)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        except Exception:
            log.exception("redfish server ended with an error", extra={"port": self.port})
        finally:
            self.guard.close_all()  # TLS handshakes still under way are not uvicorn's connections yet
            self._sock.close()
            if self._tls_dir is not None:
                shutil.rmtree(self._tls_dir, ignore_errors=True)
        log.info("redfish server stopped", extra={"port": self.port})


def _config(app: ASGIApp, host: str, port: int, tls_cert: str | None, tls_key: str | None,
            http: bool, guard: ConnectionGuard) -> uvicorn.Config:
    context = None
    if not http:
        # TLS is ours, not uvicorn's: vmbmc.redfish.protocol admits a connection before its
        # handshake and gives the handshake a deadline.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)  # type: ignore[arg-type]
        context.set_ciphers(_TLS12_CIPHERS)
    return uvicorn.Config(
        RequestPhases(app, guard),
        host=host,
        port=port,
        http=protocol_factory(guard, context),  # type: ignore[arg-type]
        log_config=None,
        access_log=False,  # vmbmc.redfish.middleware writes one structured line per request
        lifespan="off",
        ws="none",  # Redfish has no WebSocket; wsproto (there for the emulator) stays out of the kbmc
        server_header=False,
        proxy_headers=False,  # scope["client"] is the peer: the guard finds its connection by it
        timeout_keep_alive=guard.limits.keep_alive,
        timeout_graceful_shutdown=5,
    )


async def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    http: bool = False,
    limits: ConnectionLimits | None = None,
) -> RedfishServer:
    """Start serving `app` on host:port as a task of the running loop; returns once listening.

    HTTPS unless `http`; without `tls_cert`/`tls_key` a self-signed certificate is generated into a
    temporary directory (removed on stop). Port 0 picks a free port (read `server.port`).
    `limits`: connection caps and timeouts (vmbmc.redfish.connections; defaults there).
    """
    if tls_cert and not tls_key:
        raise ValueError("tls_cert needs tls_key")
    guard = ConnectionGuard(limits or ConnectionLimits())
    tls_dir = None
    if not http and not tls_cert:
        names = (host,) if host not in ("", "0.0.0.0", "::") else ()
        cert_path, key_path = await self_signed_certificate_apart(names)
        tls_cert, tls_key, tls_dir = str(cert_path), str(key_path), cert_path.parent
    config = _config(app, host, port, tls_cert, tls_key, http, guard)
    sock = _bind(host, port)
    server = _EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name=f"redfish:{port}")
    deadline = asyncio.get_running_loop().time() + _START_TIMEOUT
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises the startup error
            raise RuntimeError("redfish server exited during startup")
        if asyncio.get_running_loop().time() > deadline:
            server.should_exit = True
            raise TimeoutError(f"redfish server on {host}:{port} did not start within {_START_TIMEOUT} s")
        await asyncio.sleep(0.01)
    # The app's EventService (create_app) delivers while the app is served.
    events = getattr(getattr(app, "state", None), "events", None)
    if events is not None:
        await events.start()
    result = RedfishServer(server, task, sock, https=not http, tls_dir=tls_dir, guard=guard, events=events)
    log.info("redfish server listening", extra={"url": result.url})
    return result


def run(app: ASGIApp, host: str, port: int, *, tls_cert: str | None = None, tls_key: str | None = None,
        http: bool = False) -> None:
    """Standalone: serve until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before the port answers: a client may stop it at once
            loop.add_signal_handler(sig, stop.set)
        server = await serve(app, host, port, tls_cert=tls_cert, tls_key=tls_key, http=http)
        await stop.wait()
        await server.stop()

    asyncio.run(main())
