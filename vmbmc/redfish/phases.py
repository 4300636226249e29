"""ASGI middleware telling the connection guard where each request is (vmbmc.redfish.connections):
its headers are in (the header deadline ends), its body is in or the app answers without waiting for
it (the body deadline ends: `body` seconds from the headers), its answer is sent (the connection is
idle again). A request's connection is found by its scope's `client`, the peer address the guard
admitted it under. A stalled body is cut by closing the connection, so the app reads a disconnect,
never half a request."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmbmc.redfish.connections import ConnectionGuard


def _with_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class RequestPhases:
    def __init__(self, app: ASGIApp, guard: ConnectionGuard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = self.guard.find(scope.get("client")) if scope["type"] == "http" else None
        if conn is None:
            await self.app(scope, receive, send)
            return
        with_body = _with_body(scope)
        conn.request_started(with_body)

        async def body() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                conn.serving()
            return message

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                conn.serving()
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                conn.answered()

        await self.app(scope, body if with_body else receive, answer)
