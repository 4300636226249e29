"""Wiring of authentication and authorization into the emulator (kube-apiserver's filter chain).

Every request is authenticated (a bad bearer token is always a 401, in every mode) and then
authorized by the configured mode: `RBAC` (the default, as in every real cluster) or `AlwaysAllow`
(an explicit opt-in for quick experiments). Both run before routing, as upstream, so an anonymous
request for an unknown path is a 403 under RBAC, not a 404. The user travels to admission (escalation
checks) and to the review endpoints in a context variable: the store calls admission synchronously
inside the request task.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from contextvars import ContextVar
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from vmbmc_devcluster.emulator.authn import (
    DEFAULT_EXPIRATION,
    ISSUER,
    MAX_EXPIRATION,
    MIN_EXPIRATION,
    Authenticator,
    UserInfo,
    rfc3339,
)
from vmbmc_devcluster.emulator.errors import ApiError, bad_request, invalid
from vmbmc_devcluster.emulator.impersonation import impersonate
from vmbmc_devcluster.emulator.rbac import (
    AlwaysAllow,
    Decision,
    RBACAuthorizer,
    RuleSource,
    forbidden_details,
    forbidden_message,
)
from vmbmc_devcluster.emulator.requestinfo import Attributes, request_attributes

log = logging.getLogger("vmbmc.emulator.access")

ALWAYS_ALLOW = "AlwaysAllow"
RBAC = "RBAC"
# RBAC, as kube-apiserver is configured in every real cluster; AlwaysAllow is an explicit opt-in.
DEFAULT_AUTHORIZATION = RBAC

# The user of the request being served; None inside the emulator's own controllers (they act as the
# API server's loopback client, which is in system:masters upstream).
CURRENT_USER: ContextVar[UserInfo | None] = ContextVar("vmbmc_emulator_user", default=None)


def normalize_mode(mode: str | None) -> str:
    if mode is None:
        return DEFAULT_AUTHORIZATION
    for known in (ALWAYS_ALLOW, RBAC):
        if mode.lower() == known.lower():
            return known
    raise ValueError(f"unknown authorization mode {mode!r} (use {ALWAYS_ALLOW!r} or {RBAC!r})")


class Security:
    """The emulator's authenticator and authorizer; `emulator.security`."""

    def __init__(self, emulator: Any, authorization: str | None = None) -> None:
        self.emulator = emulator
        self.mode = normalize_mode(authorization)
        self.authn = Authenticator(emulator.store, emulator.registry)
        self.rules = RuleSource(emulator.store, emulator.registry)
        self._rbac = RBACAuthorizer(self.rules)
        self._allow = AlwaysAllow()
        # The latest authorization denials as (username, message): lets a test prove an identity never
        # hit a missing rule, even where the client retried or logged the 403 and went on.
        self.denials: deque[tuple[str, str]] = deque(maxlen=1000)

    @property
    def rbac_enabled(self) -> bool:
        return self.mode == RBAC

    def authorize(self, user: UserInfo, attrs: Attributes) -> Decision:
        if self.rbac_enabled:
            return self._rbac.authorize(user, attrs)
        return self._allow.authorize(user, attrs)

    def check(
        self, method: str, path: str, query: Any, authorization: str | None, headers: Any = None
    ) -> UserInfo:
        """Authenticate, impersonate (Impersonate-* `headers`) and authorize one request; raise its
        400/401/403 Status as an ApiError. → the user the request acts as."""
        user = self.authn.authenticate(authorization)
        if headers is not None:
            user = impersonate(user, headers, lambda u, a: self.authorize(u, a).allowed, self._forbidden)
        attrs = request_attributes(method, path, query)
        decision = self.authorize(user, attrs)
        if not decision.allowed:
            raise self._forbidden(user, attrs, decision.reason)
        return user

    def _forbidden(self, user: UserInfo, attrs: Attributes, reason: str = "") -> ApiError:
        message = forbidden_message(user, attrs, reason)
        self.denials.append((user.name, message))
        return ApiError(403, "Forbidden", message, details=forbidden_details(attrs))


class AccessMiddleware:
    """A pure ASGI middleware (BaseHTTPMiddleware would buffer watch streams)."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app, self.security = app, security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # A WebSocket upgrade (the console subresource) is a GET to the authorizer, as upstream.
        websocket = scope["type"] == "websocket"
        request = HTTPConnection(scope)
        try:
            user = self.security.check(
                "GET" if websocket else scope["method"],
                request.url.path,
                request.query_params,
                request.headers.get("authorization"),
                request.headers,
            )
        except ApiError as exc:
            await send_status(scope, receive, send, exc)
            return
        except Exception as exc:  # never a bare 500 and never an accidental allow
            log.exception("authentication or authorization failed")
            await send_status(
                scope, receive, send, ApiError(500, "InternalError", f"Internal error occurred: {exc}")
            )
            return
        token = CURRENT_USER.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            CURRENT_USER.reset(token)


async def send_status(scope: Scope, receive: Receive, send: Send, exc: ApiError) -> None:
    """A Status answer; to a WebSocket upgrade as the HTTP answer that refuses it (no 101)."""
    prefix = "http"
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        prefix = "websocket.http"
    body = json.dumps(exc.status(), separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.code == 403:
        headers.append((b"x-content-type-options", b"nosniff"))
    await send({"type": f"{prefix}.response.start", "status": exc.code, "headers": headers})
    await send({"type": f"{prefix}.response.body", "body": body})


# --- TokenRequest: POST /api/v1/namespaces/NS/serviceaccounts/NAME/token ---------------------------
_BOUND_KINDS = {"Pod": "pods", "Secret": "secrets"}


def _token_invalid(name: str, field: str, value: Any, message: str) -> ApiError:
    from vmbmc_devcluster.emulator.registry import ResourceType

    rt = ResourceType("authentication.k8s.io", "v1", "tokenrequests", "TokenRequest", True)
    shown = json.dumps(value) if not isinstance(value, str) else f'"{value}"'
    cause = {"reason": "FieldValueInvalid", "message": f"Invalid value: {shown}: {message}", "field": field}
    return invalid(rt, name, [cause])


def _bound_object(emulator: Any, namespace: str, ref: Any) -> dict[str, str] | None:
    if not ref:
        return None
    if not isinstance(ref, dict):
        raise bad_request("spec.boundObjectRef must be an object")
    kind, name = ref.get("kind"), str(ref.get("name") or "")
    plural = _BOUND_KINDS.get(str(kind))
    if plural is None:
        raise bad_request(f"cannot bind token to object of type {kind}")
    rt = emulator.registry.get("", "v1", plural)
    obj = emulator.store.try_get(rt, namespace, name)
    if obj is None:
        raise ApiError(
            404, "NotFound", f'{plural} "{name}" not found', details={"name": name, "kind": plural}
        )
    uid = obj["metadata"]["uid"]
    if ref.get("uid") and ref["uid"] != uid:
        raise ApiError(
            409,
            "Conflict",
            f"the UID in the bound object reference ({ref['uid']}) does not match the UID in record. "
            "The object might have been deleted and then recreated",
        )
    return {"kind": str(kind), "name": name, "uid": uid}


async def token_request(
    emulator: Any, namespace: str, name: str, method: str, body: dict | None
) -> tuple[int, dict]:
    spec = (body or {}).get("spec") or {}
    if not isinstance(spec, dict):
        raise bad_request("spec must be an object")
    seconds = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise bad_request("spec.expirationSeconds must be an integer")
    if seconds < MIN_EXPIRATION:
        raise _token_invalid(
            name, "spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes"
        )
    if seconds > MAX_EXPIRATION:
        raise _token_invalid(
            name, "spec.expirationSeconds", seconds, "may not specify a duration larger than 2^32 seconds"
        )
    audiences = spec.get("audiences") or None
    if audiences is not None and not (
        isinstance(audiences, list) and all(isinstance(a, str) for a in audiences)
    ):
        raise bad_request("spec.audiences must be a list of strings")
    bound = _bound_object(emulator, namespace, spec.get("boundObjectRef"))
    authn: Authenticator = emulator.security.authn
    token, exp = authn.issue_service_account_token(
        namespace, name, expiration=seconds, audiences=audiences, bound=bound
    )
    out_spec: dict[str, Any] = {
        "audiences": audiences or [ISSUER],
        "expirationSeconds": seconds,
        "boundObjectRef": None,
    }
    if bound:
        out_spec["boundObjectRef"] = {"kind": bound["kind"], "apiVersion": "v1", **bound}
    return 201, {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": rfc3339(time.time())},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": rfc3339(exp)},
    }


def install_security(emulator: Any, authorization: str | None = None) -> Security:
    """Attach `emulator.security`, the TokenRequest subresource, the review APIs, RBAC admission
    and the bootstrap ClusterRoles/bindings (present in every mode, as in any cluster)."""
    from vmbmc_devcluster.emulator.rbac_admission import install_rbac_admission
    from vmbmc_devcluster.emulator.rbac_bootstrap import install_bootstrap_policy
    from vmbmc_devcluster.emulator.reviews import install_reviews

    security = Security(emulator, authorization)
    emulator.security = security
    emulator.registry.add_subresource_handler(
        "", "v1", "serviceaccounts", "token", token_request, verbs=("create",)
    )
    install_reviews(emulator)
    install_rbac_admission(emulator)
    install_bootstrap_policy(emulator)
    return security
