"""ETag middleware: a strong ETag on every JSON GET, `If-None-Match` → 304, `If-Match` on PATCH.

The ETag is a hash of the representation, so it changes exactly when what a client sees changes.
For a PATCH with `If-Match`, the middleware renders the resource's current representation with an
internal GET and answers 412 PreconditionFailed when the tags differ (sushy then retries without
the weak prefix, then without `If-Match`). `If-Match` on action POSTs is tolerated and ignored:
gofish sends the System's ETag with Reset, and an action's outcome does not depend on it.
"""

from __future__ import annotations

import hashlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmbmc.redfish.errors import RedfishError


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(header: str, etag: str) -> bool:
    """Strong comparison (RFC 9110 §13.1.1): a weak tag never matches an If-Match."""
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class ETagMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method in ("GET", "HEAD"):
            await self._tagged_get(scope, receive, send)
            return
        if method in ("PATCH", "PUT"):
            if_match = _header(scope, b"if-match")
            if if_match is not None:
                current = await self._current_etag(scope)
                if current is not None and not _matches(if_match, current):
                    await RedfishError(412, "PreconditionFailed").response()(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _tagged_get(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            headers = list(start.get("headers", []))
            if start["status"] == 200 and body:
                etag = etag_of(body)
                headers.append((b"etag", etag.encode()))
                if_none_match = _header(scope, b"if-none-match")
                if if_none_match is not None and _matches(if_none_match.replace("W/", ""), etag):
                    dropped = (b"content-length", b"content-type")
                    kept = [(k, v) for k, v in headers if k.lower() not in dropped]
                    await send({"type": "http.response.start", "status": 304, "headers": kept})
                    await send({"type": "http.response.body", "body": b""})
                    return
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)

    async def _current_etag(self, scope: Scope) -> str | None:
        """The ETag a GET of this URI would carry now, or None when the GET does not succeed."""
        get_scope = {**scope, "method": "GET", "headers": [
            (k, v) for k, v in scope["headers"] if k.lower() not in (b"if-match", b"content-length")
        ]}
        status = 0
        chunks: list[bytes] = []

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(get_scope, no_body, capture)
        return etag_of(b"".join(chunks)) if status == 200 else None
