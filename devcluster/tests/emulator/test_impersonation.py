"""Impersonation (Impersonate-User / -Group / -Uid / -Extra-*) as kube-apiserver's impersonation filter
does it: after authentication, before authorization, every requested part checked with the
`impersonate` verb, and the request then authorized as the impersonated user."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.datastructures import Headers
from starlette.testclient import TestClient

from vmbmc_devcluster.emulator.authn import ADMIN, UserInfo
from vmbmc_devcluster.emulator.emulator import Emulator
from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.impersonation import impersonate
from vmbmc_devcluster.emulator.requestinfo import Attributes
from vmbmc_devcluster.emulator.server import create_app
from vmbmc_devcluster.testing.emulator_client import emulator_client

ADMIN_H = {"Authorization": "Bearer admin"}
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
SA = "system:serviceaccount:ns:sa"
SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"]
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _headers(*pairs: tuple[str, str]) -> Headers:
    return Headers(raw=[(k.lower().encode(), v.encode()) for k, v in pairs])


class _Recorder:
    """An authorizer for `impersonate` that records what it was asked and allows all but `deny`."""

    def __init__(self, deny: set[str] | None = None) -> None:
        self.asked: list[Attributes] = []
        self.deny = deny or set()

    def allowed(self, user: UserInfo, attrs: Attributes) -> bool:
        self.asked.append(attrs)
        return attrs.resource not in self.deny

    @staticmethod
    def forbidden(user: UserInfo, attrs: Attributes) -> ApiError:
        return ApiError(403, "Forbidden", f"{attrs.resource} {attrs.name}")


def _impersonate(*pairs: tuple[str, str], deny: set[str] | None = None) -> tuple[UserInfo, _Recorder]:
    rec = _Recorder(deny)
    return impersonate(ADMIN, _headers(*pairs), rec.allowed, rec.forbidden), rec


def test_without_headers_the_caller_is_kept_and_nothing_is_checked() -> None:
    user, rec = _impersonate(("Accept", "application/json"))
    assert user is ADMIN and rec.asked == []


def test_every_part_is_checked_in_upstream_order_with_its_attributes() -> None:
    user, rec = _impersonate(
        ("Impersonate-User", "bob"),
        ("Impersonate-Group", "devs"),
        ("Impersonate-Group", "ops"),
        ("Impersonate-Uid", "u-1"),
        ("Impersonate-Extra-Scopes", "view"),
        ("Impersonate-Extra-Scopes", "edit"),
    )
    assert [(a.api_group, a.resource, a.subresource, a.name) for a in rec.asked] == [
        ("", "users", "", "bob"),
        ("", "groups", "", "devs"),
        ("", "groups", "", "ops"),
        ("authentication.k8s.io", "userextras", "scopes", "view"),
        ("authentication.k8s.io", "userextras", "scopes", "edit"),
        ("authentication.k8s.io", "uids", "", "u-1"),
    ]
    assert all(a.verb == "impersonate" and a.resource_request and not a.namespace for a in rec.asked)
    assert user == UserInfo("bob", ("devs", "ops", "system:authenticated"), "u-1")
    assert user.extra == {"scopes": ["view", "edit"]}


def test_a_service_account_name_is_checked_as_a_serviceaccount_in_its_namespace() -> None:
    user, rec = _impersonate(("Impersonate-User", SA))
    (attrs,) = rec.asked
    assert (attrs.resource, attrs.namespace, attrs.name) == ("serviceaccounts", "ns", "sa")
    assert user.name == SA and list(user.groups) == SA_GROUPS
    # with groups asked for, those are the groups (plus system:authenticated), not the SA's
    user, _ = _impersonate(("Impersonate-User", SA), ("Impersonate-Group", "devs"))
    assert list(user.groups) == ["devs", "system:authenticated"]


@pytest.mark.parametrize(
    "name", ["system:serviceaccount:ns", "system:serviceaccount::sa", "system:serviceaccount:ns:a:b"]
)
def test_a_malformed_service_account_name_is_a_plain_user(name: str) -> None:
    user, rec = _impersonate(("Impersonate-User", name))
    assert rec.asked[0].resource == "users" and rec.asked[0].name == name
    assert list(user.groups) == ["system:authenticated"]


@pytest.mark.parametrize(
    ("name", "groups", "want"),
    [
        ("bob", [], ["system:authenticated"]),
        ("bob", ["system:authenticated"], ["system:authenticated"]),
        # upstream adds system:authenticated unless one of the two system groups was asked for
        ("bob", ["system:unauthenticated"], ["system:unauthenticated"]),
        ("system:anonymous", [], ["system:unauthenticated"]),
        ("system:anonymous", ["devs"], ["devs", "system:unauthenticated"]),
        ("system:anonymous", ["system:authenticated"], ["system:authenticated", "system:unauthenticated"]),
    ],
)
def test_implied_groups(name: str, groups: list[str], want: list[str]) -> None:
    user, _ = _impersonate(("Impersonate-User", name), *(("Impersonate-Group", g) for g in groups))
    assert list(user.groups) == want


def test_extra_keys_are_lowercased_then_percent_decoded() -> None:
    user, rec = _impersonate(
        ("Impersonate-User", "bob"),
        ("Impersonate-Extra-Example.com%2Fteam", "a"),
        ("Impersonate-Extra-Case%41", "b"),
        ("Impersonate-Extra-Bad%zz", "c"),  # not decodable: kept as sent (lowercased)
    )
    assert user.extra == {"example.com/team": ["a"], "caseA": ["b"], "bad%zz": ["c"]}
    assert [a.subresource for a in rec.asked[1:]] == ["example.com/team", "caseA", "bad%zz"]


@pytest.mark.parametrize(
    "pairs",
    [
        [("Impersonate-Group", "system:masters")],
        [("Impersonate-Uid", "1")],
        [("Impersonate-Extra-Scopes", "x")],
        [("Impersonate-User", ""), ("Impersonate-Group", "system:masters")],  # empty is no user
    ],
)
def test_parts_without_a_user_are_400_before_any_check(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(ApiError) as err:
        _impersonate(*pairs)
    assert err.value.code == 400 and "without impersonating a user" in err.value.message


@pytest.mark.parametrize("denied", ["users", "groups", "userextras", "uids"])
def test_one_refused_part_refuses_the_request(denied: str) -> None:
    with pytest.raises(ApiError) as err:
        _impersonate(
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Scopes", "view"),
            deny={denied},
        )
    assert err.value.code == 403 and err.value.message.startswith(denied)


# --- over HTTP, with the RBAC authorizer ----------------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    with emulator_client(("sa", "other")) as c:
        yield c


def _whoami(client: TestClient, headers: dict[str, str]) -> tuple[int, Any]:
    r = client.post(
        SSR, json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, headers=headers
    )
    return r.status_code, r.json()


def _grant_sa(client: TestClient, *rules: dict[str, Any]) -> None:
    """A ClusterRole with `rules` bound to ServiceAccount ns/sa."""
    role = {"metadata": {"name": "imp"}, "rules": list(rules)}
    assert client.post(f"{RBAC}/clusterroles", json=role, headers=ADMIN_H).status_code == 201
    binding = {
        "metadata": {"name": "imp"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "imp"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}],
    }
    assert client.post(f"{RBAC}/clusterrolebindings", json=binding, headers=ADMIN_H).status_code == 201


def test_admin_may_impersonate_anyone_and_whoami_shows_it(client: TestClient) -> None:
    code, body = _whoami(client, {**ADMIN_H, "Impersonate-User": SA})
    assert code == 201 and body["status"]["userInfo"] == {"username": SA, "groups": SA_GROUPS}
    code, body = _whoami(
        client,
        {**ADMIN_H, "Impersonate-User": "alice", "Impersonate-Group": "devs", "Impersonate-Uid": "7"},
    )
    assert body["status"]["userInfo"] == {
        "username": "alice",
        "uid": "7",
        "groups": ["devs", "system:authenticated"],
    }


def test_the_request_is_authorized_as_the_impersonated_user(client: TestClient) -> None:
    r = client.get("/api/v1/namespaces/ns/secrets", headers={**ADMIN_H, "Impersonate-User": SA})
    assert r.status_code == 403
    assert r.json()["message"] == (
        f'secrets is forbidden: User "{SA}" cannot list resource "secrets" in API group "" '
        'in the namespace "ns"'
    )
    assert client.emu.security.denials[-1][0] == SA  # type: ignore[attr-defined]
    # a user in system:masters (if one may impersonate the group) is an admin
    headers = {**ADMIN_H, "Impersonate-User": "root", "Impersonate-Group": "system:masters"}
    assert client.get("/api/v1/namespaces/ns/secrets", headers=headers).status_code == 200


def test_a_caller_without_the_verb_gets_kube_apiservers_403(client: TestClient) -> None:
    sa: dict[str, str] = client.sa  # type: ignore[attr-defined]
    r = client.get("/api/v1/namespaces/ns/pods", headers={**sa, "Impersonate-User": "admin"})
    assert r.status_code == 403
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'users "admin" is forbidden: User "{SA}" cannot impersonate resource "users" in API '
        'group "" at the cluster scope',
        "reason": "Forbidden",
        "details": {"name": "admin", "kind": "users"},
        "code": 403,
    }
    r = client.get("/api", headers={**sa, "Impersonate-User": "system:serviceaccount:ns:other"})
    assert r.status_code == 403 and r.json()["message"] == (
        f'serviceaccounts "other" is forbidden: User "{SA}" cannot impersonate resource "serviceaccounts" '
        'in API group "" in the namespace "ns"'
    )
    # anonymous callers too; and a bad token is a 401 before anything is impersonated
    r = client.get("/api", headers={"Impersonate-User": "admin"})
    assert r.status_code == 403 and 'User "system:anonymous" cannot impersonate' in r.json()["message"]
    r = client.get("/api", headers={"Authorization": "Bearer nope", "Impersonate-User": "admin"})
    assert r.status_code == 401


def test_rights_to_impersonate_are_per_part_and_per_name(client: TestClient) -> None:
    sa: dict[str, str] = client.sa  # type: ignore[attr-defined]
    _grant_sa(
        client,
        {"apiGroups": [""], "resources": ["users"], "resourceNames": ["bob"], "verbs": ["impersonate"]},
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts"],
            "resourceNames": ["other"],
            "verbs": ["impersonate"],
        },
        {"apiGroups": [""], "resources": ["groups"], "resourceNames": ["devs"], "verbs": ["impersonate"]},
        {
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["userextras/scopes"],
            "resourceNames": ["view"],
            "verbs": ["impersonate"],
        },
    )
    code, body = _whoami(client, {**sa, "Impersonate-User": "bob", "Impersonate-Group": "devs"})
    assert code == 201 and body["status"]["userInfo"]["groups"] == ["devs", "system:authenticated"]
    code, body = _whoami(client, {**sa, "Impersonate-User": "system:serviceaccount:ns:other"})
    assert code == 201 and body["status"]["userInfo"]["username"] == "system:serviceaccount:ns:other"
    code, body = _whoami(client, {**sa, "Impersonate-User": "bob", "Impersonate-Extra-Scopes": "view"})
    assert code == 201 and body["status"]["userInfo"]["extra"] == {"scopes": ["view"]}
    refused = {
        "Impersonate-Group": 'groups "system:masters" is forbidden',
        "Impersonate-Uid": 'uids.authentication.k8s.io "system:masters" is forbidden',
        "Impersonate-Extra-Scopes": 'userextras.authentication.k8s.io "system:masters" is forbidden',
    }
    for header, message in refused.items():
        code, body = _whoami(client, {**sa, "Impersonate-User": "bob", header: "system:masters"})
        assert code == 403 and body["message"].startswith(message), body
        assert f'User "{SA}" cannot impersonate resource' in body["message"]
    code, body = _whoami(client, {**sa, "Impersonate-User": "carol"})
    assert code == 403 and body["message"].startswith('users "carol" is forbidden')


def test_headers_without_a_user_are_400_for_every_caller(client: TestClient) -> None:
    sa: dict[str, str] = client.sa  # type: ignore[attr-defined]
    for caller in (ADMIN_H, sa, {}):
        r = client.get("/api/v1/namespaces", headers={**caller, "Impersonate-Group": "system:masters"})
        assert r.status_code == 400, r.text
        assert r.json()["reason"] == "BadRequest" and "without impersonating a user" in r.json()["message"]


def test_always_allow_lets_anyone_impersonate() -> None:
    """The AlwaysAllow authorizer allows `impersonate` too (as upstream's)."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    emu = Emulator(authorization="AlwaysAllow")
    with TestClient(create_app(emu), base_url="http://emulator") as c:
        code, body = _whoami(c, {"Impersonate-User": "bob"})
    assert code == 201 and body["status"]["userInfo"]["username"] == "bob"
