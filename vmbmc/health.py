"""/healthz, /readyz and /metrics on a health port (aiohttp, on the caller's loop): the controller's and
the kbmc's (contracts §6). aiohttp, not uvicorn, so an IPMI-only kbmc loads no HTTP server stack."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST


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
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n" if self.alive else "stopping\n", status=200 if self.alive else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.ready if self.ready_check is None else self.ready_check():
            return web.Response(text="ok\n")
        return web.Response(text=f"not ready: {self.ready_reason}\n", status=503)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.render_metrics(), headers={"Content-Type": CONTENT_TYPE_LATEST})
