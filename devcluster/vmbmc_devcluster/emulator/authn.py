"""Authentication as kube-apiserver does it: a static admin token, ServiceAccount tokens, anonymous.

ServiceAccount tokens are JWT-shaped (header.claims.signature) with the claims kube-apiserver puts in
its own (`sub`, `kubernetes.io.namespace`, `kubernetes.io.serviceaccount.{name,uid}`, `exp`, …), but
signed with HMAC-SHA256 and a per-emulator secret: clients treat tokens as opaque and we add no
dependency for RSA. A token is valid only while its ServiceAccount (and bound Pod or Secret) exists
with the uid it was issued for, so deleting and recreating a ServiceAccount revokes old tokens,
exactly as upstream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmbmc_devcluster.emulator.errors import ApiError

ADMIN_USER = "admin"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600  # kube-apiserver refuses TokenRequests shorter than 10 minutes
MAX_EXPIRATION = 1 << 32


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, compare=False, hash=False)

    @property
    def privileged(self) -> bool:
        """system:masters bypasses escalation checks (rbac's EscalationAllowed)."""
        return MASTERS in self.groups

    def as_review_user(self) -> dict[str, Any]:
        """The `userInfo` of a SelfSubjectReview / TokenReview."""
        out: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


ANONYMOUS_USER = UserInfo(ANONYMOUS, (UNAUTHENTICATED,))
ADMIN = UserInfo(ADMIN_USER, (MASTERS, AUTHENTICATED))


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    return UserInfo(
        f"{SA_PREFIX}{namespace}:{name}",
        (SA_GROUP, f"{SA_GROUP}:{namespace}", AUTHENTICATED),
        uid,
    )


def split_service_account_username(username: str) -> tuple[str, str] | None:
    """`system:serviceaccount:NS:NAME` → (NS, NAME), as serviceaccount.SplitUsername."""
    if not username.startswith(SA_PREFIX):
        return None
    ns, sep, name = username[len(SA_PREFIX) :].partition(":")
    if not sep or not ns or not name or ":" in name:
        return None
    return ns, name


class Unauthorized(ApiError):
    def __init__(self) -> None:
        super().__init__(401, "Unauthorized", "Unauthorized")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenSigner:
    """HS256 JWTs with a secret that lives and dies with one emulator."""

    _HEADER = _b64(
        json.dumps({"alg": "HS256", "kid": "vmbmc-emulator", "typ": "JWT"}, separators=(",", ":")).encode()
    )

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _sign(self, signing_input: str) -> str:
        return _b64(hmac.new(self._secret, signing_input.encode(), hashlib.sha256).digest())

    def issue(self, claims: dict[str, Any]) -> str:
        body = f"{self._HEADER}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token we signed, else None (malformed, forged or re-signed)."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != self._HEADER:
            return None
        if not hmac.compare_digest(self._sign(f"{parts[0]}.{parts[1]}"), parts[2]):
            return None
        try:
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, binascii.Error):
            return None
        return claims if isinstance(claims, dict) else None


class Authenticator:
    """Maps an `Authorization` header to a user, or raises `Unauthorized` (401)."""

    def __init__(self, store: Any, registry: Any, *, admin_token: str | None = None) -> None:
        self.store, self.registry = store, registry
        self.signer = TokenSigner()
        self.static_tokens: dict[str, UserInfo] = {}
        if admin_token:
            self.add_static_token(admin_token, ADMIN)

    def add_static_token(self, token: str, user: UserInfo) -> None:
        # the group adder of kube-apiserver appends system:authenticated to every authenticated user
        groups = user.groups if AUTHENTICATED in user.groups else (*user.groups, AUTHENTICATED)
        self.static_tokens[token] = UserInfo(user.name, groups, user.uid, user.extra)

    # --- tokens ---------------------------------------------------------------------------------
    def issue_service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        expiration: int = DEFAULT_EXPIRATION,
        audiences: list[str] | None = None,
        bound: dict[str, str] | None = None,
    ) -> tuple[str, float]:
        """A token for an existing ServiceAccount; raises 404 if it is missing. → (token, exp)."""
        sa = self._get("serviceaccounts", namespace, name)
        if sa is None:
            raise ApiError(
                404,
                "NotFound",
                f'serviceaccounts "{name}" not found',
                details={"name": name, "kind": "serviceaccounts"},
            )
        now = time.time()
        exp = now + expiration
        k8s: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]},
        }
        if bound:
            k8s[bound["kind"].lower()] = {"name": bound["name"], "uid": bound["uid"]}
        claims = {
            "aud": audiences or [ISSUER],
            "exp": int(exp),
            "iat": int(now),
            "iss": ISSUER,
            "jti": secrets.token_hex(8),
            "kubernetes.io": k8s,
            "nbf": int(now),
            "sub": f"{SA_PREFIX}{namespace}:{name}",
        }
        return self.signer.issue(claims), exp

    def _get(self, plural: str, namespace: str, name: str) -> dict | None:
        rt = self.registry.get("", "v1", plural)
        return None if rt is None else self.store.try_get(rt, namespace, name)

    def _service_account_user(self, token: str) -> UserInfo:
        claims = self.signer.verify(token)
        if claims is None:
            raise Unauthorized()
        try:
            k8s = claims["kubernetes.io"]
            ns, sa = k8s["namespace"], k8s["serviceaccount"]
            name, uid, exp = sa["name"], sa["uid"], float(claims["exp"])
        except (KeyError, TypeError, ValueError):
            raise Unauthorized() from None
        if exp <= time.time():
            raise Unauthorized()
        live = self._get("serviceaccounts", ns, name)
        if live is None or live["metadata"].get("uid") != uid or live["metadata"].get("deletionTimestamp"):
            raise Unauthorized()
        extra: dict[str, list[str]] = {}
        for kind, plural in (("pod", "pods"), ("secret", "secrets")):
            ref = k8s.get(kind)
            if isinstance(ref, dict):
                obj = self._get(plural, ns, str(ref.get("name", "")))
                if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
                    raise Unauthorized()
                extra[f"authentication.kubernetes.io/{kind}-name"] = [ref["name"]]
                extra[f"authentication.kubernetes.io/{kind}-uid"] = [ref["uid"]]
        user = service_account_user(ns, name, uid)
        return UserInfo(user.name, user.groups, user.uid, extra)

    # --- requests -------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> UserInfo:
        """As bearertoken.Authenticator + union.NewFailOnError(…, anonymous): a header that is not a
        bearer token is ignored (anonymous); a bearer token that does not verify is a 401."""
        header = (authorization or "").strip()
        if not header:
            return ANONYMOUS_USER
        parts = header.split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
            return ANONYMOUS_USER
        token = parts[1]
        for known, user in self.static_tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):  # no timing oracle on the admin token
                return user
        return self._service_account_user(token)
