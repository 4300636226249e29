"""Authentication middleware: a session token (`X-Auth-Token`) or HTTP Basic on every request except
the service root, `$metadata`, the OData service document and the login itself.

Every password check (Basic, session login) takes its turn from the BMC's `LoginLimiter` (shared
with IPMI, vmbmc/auth/lockout.py): at once unless the client's address is held and others from it are
waiting; a held address's queued attempts wait on the event loop, one check per hold delay, and beyond
its short queue are refused unchecked with 503 and `Retry-After`. A wrong password is a failed login;
while the address is held its 401 is sent only after the hold's delay. A correct password is answered
as soon as it is checked. A request without credentials, with a malformed header or an unknown or
expired token is not a failed login (a plain 401).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math

from starlette.types import ASGIApp, Receive, Scope, Send

from vmbmc.redfish import paths
from vmbmc.redfish.context import Service
from vmbmc.redfish.errors import RedfishError, retry_after

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


async def check_password(
    service: Service, client: str, user: str, password: str, how: str
) -> RedfishError | None:
    """Check a password in its turn (vmbmc/auth/lockout.py): None when right, else the error to answer
    (401 once the failure's delay has passed, or 503 unchecked when the address's queue is full). The
    waits are asyncio sleeps: other requests go on meanwhile. Held addresses are not logged again."""
    limiter = service.limiter
    turn = limiter.turn(client, "redfish")
    if turn is None:
        # counted (vmbmc_login_refused_unchecked_total), not logged: a guesser could flood the log
        log.debug("login refused unchecked: the address is held and its queue is full",
                  extra={"client": client, "user": user, "auth": how})
        wait = limiter.delay * (limiter.queue + 1)
        return RedfishError(503, "ServiceTemporarilyUnavailable", math.ceil(wait), headers=retry_after(wait))
    if turn.wait:
        try:
            await asyncio.sleep(turn.wait)
        except BaseException:
            turn.cancel()
            raise
    if service.credentials.check(user, password):
        turn.passed()
        return None
    delay = turn.failed()
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
            refused = await check_password(service, client, user, password, "basic")
            if refused is not None:
                await refused.response()(scope, receive, send)
                return
            state["user"] = user
        else:
            await unauthorized().response()(scope, receive, send)
            return
        await self.app(scope, receive, send)
