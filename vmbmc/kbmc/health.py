"""`/healthz`, `/readyz` and `/metrics` of a kbmc process (contracts §6), on their own port."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def health_app(ready: Callable[[], bool]) -> Starlette:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        # Ready once the VM watch has synced: before that the BMC would answer from nothing.
        if ready():
            return PlainTextResponse("ok\n")
        return PlainTextResponse("watch not synced\n", status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )
