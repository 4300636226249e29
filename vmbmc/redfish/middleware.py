"""Cross-cutting ASGI middleware: access log, Redfish response headers, request body limit."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmbmc.redfish.errors import RedfishError

access_log = logging.getLogger("vmbmc.redfish.access")

COMMON_HEADERS = [
    (b"odata-version", b"4.0"),
    (b"cache-control", b"no-cache"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
]


class AccessLogMiddleware:
    """One structured line per request: method, path, status, user, client, duration; no secrets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["request_id"] = uuid.uuid4().hex
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s", scope["method"], scope["path"], status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "user": state.get("user", ""),
                        "client": scope["client"][0] if scope.get("client") else "",
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "request_id": state["request_id"],
                    },
                )


class RedfishHeadersMiddleware:
    """`OData-Version: 4.0` and the security headers on every answer, errors included.

    Also refuses what the service cannot honour before any endpoint runs: an `OData-Version` other
    than 4.0 (412) and `$` query parameters (501: no $expand, $select, $filter... are offered).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = _refusal(scope)
        if refusal is not None:
            await refusal.response()(scope, receive, _with_headers(send))
            return
        await self.app(scope, receive, _with_headers(send))


def _refusal(scope: Scope) -> RedfishError | None:
    for key, value in scope["headers"]:
        if key.lower() == b"odata-version" and value.strip() != b"4.0":
            return RedfishError(412, "HeaderInvalid", f"OData-Version: {value.decode('latin-1')}",
                                resolution="This service supports OData-Version 4.0.")
    query = scope.get("query_string", b"")
    if query and any(part.startswith(b"$") for part in query.split(b"&")):
        return RedfishError(501, "QueryNotSupported")
    return None


def _with_headers(send: Send) -> Send:
    async def add_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *COMMON_HEADERS]}
        await send(message)

    return add_headers


class BodyLimitMiddleware:
    """Reads a request body up to `max_body` bytes (413 beyond), then replays it to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit: int = scope["app"].state.service.max_body
        too_large = RedfishError(413, "PayloadTooLarge")
        for key, value in scope["headers"]:
            if key.lower() == b"content-length" and value.isdigit() and int(value) > limit:
                await too_large.response()(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large.response()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
