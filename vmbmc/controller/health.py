"""/healthz, /readyz and /metrics on the health port (aiohttp, on the controller's loop)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from vmbmc.controller.metrics import Metrics


class HealthServer:
    def __init__(self, metrics: Metrics, address: str, port: int) -> None:
        self.metrics = metrics
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
        if self.ready:
            return web.Response(text="ok\n")
        return web.Response(text=f"not ready: {self.ready_reason}\n", status=503)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
