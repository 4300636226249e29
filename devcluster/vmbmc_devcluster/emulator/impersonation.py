"""User impersonation (`kubectl --as`, `--as-group`, `--as-uid`), as kube-apiserver's impersonation filter
(k8s.io/apiserver/pkg/endpoints/filters/impersonation.go) does it.

It runs after authentication and before authorization: every part of the requested identity must be
allowed to the caller by the `impersonate` verb (users, or serviceaccounts for a ServiceAccount name;
groups; authentication.k8s.io uids and userextras/<key>), and the request then proceeds, and is
authorized, as the impersonated user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from vmbmc_devcluster.emulator.authn import ANONYMOUS, AUTHENTICATED, SA_GROUP, UNAUTHENTICATED, UserInfo
from vmbmc_devcluster.emulator.errors import ApiError, bad_request
from vmbmc_devcluster.emulator.requestinfo import Attributes

USER_HEADER = "impersonate-user"
GROUP_HEADER = "impersonate-group"
UID_HEADER = "impersonate-uid"
EXTRA_PREFIX = "impersonate-extra-"
SA_PREFIX = "system:serviceaccount:"


def _requested(headers: Any) -> tuple[str, list[str], str, dict[str, list[str]]]:
    name = headers.get(USER_HEADER, "")
    groups = headers.getlist(GROUP_HEADER)
    uid = headers.get(UID_HEADER, "")
    extra: dict[str, list[str]] = {}
    for key, value in headers.items():
        if key.lower().startswith(EXTRA_PREFIX):
            # lowercased, then %-decoded (so %41 stays "A"), as upstream
            extra.setdefault(unquote(key[len(EXTRA_PREFIX) :].lower()), []).append(value)
    return name, groups, uid, extra


def _user_attributes(name: str) -> Attributes:
    if name.startswith(SA_PREFIX):
        namespace, _, sa = name[len(SA_PREFIX) :].partition(":")
        if namespace and sa and ":" not in sa:
            return Attributes(
                "impersonate", resource_request=True, namespace=namespace, resource="serviceaccounts", name=sa
            )
    return Attributes("impersonate", resource_request=True, resource="users", name=name)


def impersonate(
    user: UserInfo,
    headers: Any,
    allowed: Callable[[UserInfo, Attributes], bool],
    deny: Callable[[UserInfo, Attributes], ApiError],
) -> UserInfo:
    """The user the request acts as: `user` itself without Impersonate-* headers; else the requested
    identity once `allowed` says `user` may impersonate every part of it (`deny` builds the 403)."""
    name, groups, uid, extra = _requested(headers)
    if not name:
        if groups or uid or extra:
            asked = [*(f"groups={g}" for g in groups), *([f"uid={uid}"] if uid else []), *extra]
            raise bad_request(f"requested {asked} without impersonating a user")
        return user
    checks = [_user_attributes(name)]
    checks += [Attributes("impersonate", resource_request=True, resource="groups", name=g) for g in groups]
    for key, values in extra.items():
        checks += [
            Attributes(
                "impersonate",
                resource_request=True,
                api_group="authentication.k8s.io",
                resource="userextras",
                subresource=key,
                name=value,
            )
            for value in values
        ]
    if uid:
        checks.append(
            Attributes(
                "impersonate",
                resource_request=True,
                api_group="authentication.k8s.io",
                resource="uids",
                name=uid,
            )
        )
    for attrs in checks:
        if not allowed(user, attrs):
            raise deny(user, attrs)
    resolved = list(groups)
    if not groups and name.startswith(SA_PREFIX) and checks[0].resource == "serviceaccounts":
        resolved = [SA_GROUP, f"{SA_GROUP}:{checks[0].namespace}"]
    # as upstream: system:authenticated unless a system group was asked for (anonymous: unauthenticated)
    implied = (UNAUTHENTICATED,) if name == ANONYMOUS else (AUTHENTICATED, UNAUTHENTICATED)
    if not any(g in implied for g in resolved):
        resolved.append(implied[0])
    return UserInfo(name, tuple(resolved), uid, extra)
