"""Authentication middleware: a session token (`X-Auth-Token`) or HTTP Basic on every request except
the service root, `$metadata`, the OData service document and the login itself.

A wrong password is a failed login: recorded in the BMC's `LoginLimiter` (shared with IPMI) by
client address; while the address is held, the 401 is sent only after the hold's delay.
Credentials are always checked first, so correct credentials are answered at once and never
refused. A request without credentials, with a malformed header or an unknown or expired token is
not a failed login (a plain 401).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from vmbmc.redfish import paths
from vmbmc.redfish.context import Service
from vmbmc.redfish.errors import RedfishError

log = logging.getLogger(__name__)

_PUBLIC_READS = frozenset(
    {"/redfish", "/redfish/", paths.ROOT, paths.ROOT + "/", paths.ODATA, paths.METADATA}
)
_WWW_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="vmbmc"'}


def is_public(method: str, path: str) -> bool:
    if method in ("GET", "HEAD") and path in _PUBLIC_READS:
        return True
    # The login: the endpoint checks the credentials in the body itself.
    return method == "POST" and path.rstrip("/") in (paths.SESSIONS, paths.SESSIONS + "/Members")


def unauthorized() -> RedfishError:
    return RedfishError(401, "NoValidSession", headers=_WWW_AUTHENTICATE)


async def login_failed(service: Service, client: str, user: str, how: str) -> RedfishError:
    """Record a failed login and build its 401, after the hold's delay when the address is held
    (an asyncio sleep: other requests go on meanwhile). Held addresses are not logged again."""
    delay = service.limiter.failure(client, "redfish")
    if delay:
        await asyncio.sleep(delay)
    else:
        log.info("failed login", extra={"client": client, "user": user, "auth": how})
    return unauthorized()


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        service: Service = scope["app"].state.service
        client = scope["client"][0] if scope.get("client") else "unknown"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        state = scope.setdefault("state", {})
        token = headers.get("x-auth-token")
        if token:
            session = service.sessions.lookup(token)
            if session is None:
                await unauthorized().response()(scope, receive, send)
                return
            state["user"], state["session_id"] = session.user, session.id
        elif "authorization" in headers:
            pair = _basic(headers["authorization"])
            if pair is None:
                await unauthorized().response()(scope, receive, send)
                return
            user, password = pair
            if not service.credentials.check(user, password):
                await (await login_failed(service, client, user, "basic")).response()(scope, receive, send)
                return
            state["user"] = user
        else:
            await unauthorized().response()(scope, receive, send)
            return
        await self.app(scope, receive, send)
