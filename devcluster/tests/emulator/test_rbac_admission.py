"""RBAC object validation and escalation prevention (escalate / bind), over HTTP in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from vmbmc_devcluster.emulator.rbac import GROUP
from vmbmc_devcluster.testing.emulator_client import emulator_client

ADMIN_H = {"Authorization": "Bearer admin"}
RBAC_API = f"/apis/{GROUP}/v1"
ROLES = f"{RBAC_API}/namespaces/ns/roles"
BINDINGS = f"{RBAC_API}/namespaces/ns/rolebindings"
VM_GET = {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "verbs": ["get"]}
VM_DELETE = {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "verbs": ["delete"]}
SA_GROUPS = '["system:serviceaccounts" "system:serviceaccounts:ns" "system:authenticated"]'


@pytest.fixture
def client() -> Iterator[TestClient]:
    with emulator_client() as c:
        yield c


def _role(name: str, *rules: dict) -> dict:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Role", "metadata": {"name": name}, "rules": list(rules)}


def _binding(name: str, role: str, kind: str = "Role") -> dict:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": GROUP, "kind": kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}],
    }


def _give_sa(client: TestClient, *rules: dict) -> None:
    """Let the ServiceAccount manage Roles/RoleBindings and hold `rules`."""
    manage = {
        "apiGroups": [GROUP],
        "resources": ["roles", "rolebindings"],
        "verbs": ["create", "update", "patch"],
    }
    assert client.post(ROLES, json=_role("sa-powers", manage, *rules), headers=ADMIN_H).status_code == 201
    assert client.post(BINDINGS, json=_binding("sa-powers", "sa-powers"), headers=ADMIN_H).status_code == 201


@pytest.mark.parametrize(
    ("rules", "field", "message"),
    [
        (
            [{"apiGroups": [""], "resources": ["pods"]}],
            "rules[0].verbs",
            "Required value: verbs must contain at least one value",
        ),
        (
            [{"resources": ["pods"], "verbs": ["get"]}],
            "rules[0].apiGroups",
            "Required value: resource rules must supply at least one api group",
        ),
        (
            [{"apiGroups": [""], "verbs": ["get"]}],
            "rules[0].resources",
            "Required value: resource rules must supply at least one resource",
        ),
        (
            [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
            "rules[0].nonResourceURLs",
            'Invalid value: ["/metrics"]: namespaced rules cannot apply to non-resource URLs',
        ),
        ([{"apiGroups": "x", "resources": ["pods"], "verbs": ["get"]}], "rules[0].apiGroups", None),
        (["junk"], "rules[0]", None),
    ],
)
def test_invalid_roles_are_422(client: TestClient, rules: list, field: str, message: str | None) -> None:
    r = client.post(ROLES, json={"metadata": {"name": "bad"}, "rules": rules}, headers=ADMIN_H)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["reason"] == "Invalid"
    assert body["message"].startswith(f'Role.{GROUP} "bad" is invalid: {field}')
    if message:
        assert {
            "reason": body["details"]["causes"][0]["reason"],
            "field": field,
            "message": message,
        }.items() <= {**body["details"]["causes"][0]}.items()


def test_empty_rules_and_unknown_verbs_are_stored_and_grant_nothing(client: TestClient) -> None:
    assert client.post(ROLES, json=_role("empty"), headers=ADMIN_H).status_code == 201
    odd = {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "verbs": ["frobnicate"]}
    assert client.post(ROLES, json=_role("odd", odd), headers=ADMIN_H).status_code == 201
    for role in ("empty", "odd"):
        assert client.post(BINDINGS, json=_binding(role, role), headers=ADMIN_H).status_code == 201
    r = client.get("/apis/kubevirt.io/v1/namespaces/ns/virtualmachines/x", headers=client.sa)  # type: ignore[attr-defined]
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"roleRef": {"apiGroup": "example.com", "kind": "Role", "name": "r"}}, "roleRef.apiGroup"),
        ({"roleRef": {"apiGroup": GROUP, "kind": "Pod", "name": "r"}}, "roleRef.kind"),
        ({"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": ""}}, "roleRef.name"),
        ({"subjects": [{"kind": "Robot", "name": "x"}]}, "subjects[0].kind"),
        ({"subjects": [{"kind": "User", "name": "x"}]}, "subjects[0].apiGroup"),
    ],
)
def test_invalid_bindings_are_422(client: TestClient, change: dict, field: str) -> None:
    r = client.post(BINDINGS, json={**_binding("bad", "r"), **change}, headers=ADMIN_H)
    assert r.status_code == 422, r.text
    assert field in r.json()["message"]


def test_role_ref_is_immutable(client: TestClient) -> None:
    assert client.post(BINDINGS, json=_binding("b", "one"), headers=ADMIN_H).status_code == 201
    r = client.patch(
        f"{BINDINGS}/b",
        json={"roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "two"}},
        headers={**ADMIN_H, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 422 and "cannot change roleRef" in r.json()["message"]


def test_admin_may_bind_a_missing_role(client: TestClient) -> None:
    assert client.post(BINDINGS, json=_binding("dangling", "missing"), headers=ADMIN_H).status_code == 201


def test_creating_a_role_that_grants_more_needs_escalate(client: TestClient) -> None:
    _give_sa(client, VM_GET)
    sa = client.sa  # type: ignore[attr-defined]
    assert client.post(ROLES, json=_role("ok", VM_GET), headers=sa).status_code == 201
    r = client.post(ROLES, json=_role("more", VM_GET, VM_DELETE), headers=sa)
    assert r.status_code == 403
    assert r.json()["message"] == (
        f'roles.{GROUP} "more" is forbidden: user "system:serviceaccount:ns:sa" (groups={SA_GROUPS}) is '
        "attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:["kubevirt.io"], Resources:["virtualmachines"], Verbs:["delete"]}'
    )
    # updating a Role is checked the same way
    r = client.put(f"{ROLES}/ok", json=_role("ok", VM_GET, VM_DELETE), headers=sa)
    assert r.status_code == 403
    escalate = {"apiGroups": [GROUP], "resources": ["roles"], "verbs": ["escalate"]}
    assert client.post(ROLES, json=_role("esc", escalate), headers=ADMIN_H).status_code == 201
    assert client.post(BINDINGS, json=_binding("esc", "esc"), headers=ADMIN_H).status_code == 201
    assert client.post(ROLES, json=_role("more", VM_GET, VM_DELETE), headers=sa).status_code == 201


def test_names_limit_what_is_held(client: TestClient) -> None:
    _give_sa(client, {**VM_GET, "resourceNames": ["vm1"]})
    sa = client.sa  # type: ignore[attr-defined]
    assert (
        client.post(ROLES, json=_role("one", {**VM_GET, "resourceNames": ["vm1"]}), headers=sa).status_code
        == 201
    )
    r = client.post(ROLES, json=_role("all", VM_GET), headers=sa)
    assert r.status_code == 403 and "not currently held" in r.json()["message"]


def test_binding_a_role_needs_its_rules_or_bind(client: TestClient) -> None:
    _give_sa(client, VM_GET)
    sa = client.sa  # type: ignore[attr-defined]
    assert client.post(ROLES, json=_role("reader", VM_GET), headers=ADMIN_H).status_code == 201
    assert client.post(ROLES, json=_role("deleter", VM_DELETE), headers=ADMIN_H).status_code == 201
    assert client.post(BINDINGS, json=_binding("r", "reader"), headers=sa).status_code == 201
    r = client.post(BINDINGS, json=_binding("d", "deleter"), headers=sa)
    assert r.status_code == 403
    assert r.json()["message"].startswith(
        f'rolebindings.{GROUP} "d" is forbidden: user "system:serviceaccount'
    )
    r = client.post(BINDINGS, json=_binding("m", "missing"), headers=sa)
    assert r.status_code == 403
    assert r.json()["message"] == f'rolebindings.{GROUP} "m" is forbidden: role.{GROUP} "missing" not found'
    bind = {"apiGroups": [GROUP], "resources": ["roles"], "verbs": ["bind"], "resourceNames": ["deleter"]}
    assert client.post(ROLES, json=_role("binder", bind), headers=ADMIN_H).status_code == 201
    assert client.post(BINDINGS, json=_binding("binder", "binder"), headers=ADMIN_H).status_code == 201
    assert client.post(BINDINGS, json=_binding("d", "deleter"), headers=sa).status_code == 201


def test_cluster_admin_cannot_be_bound_without_bind_by_a_namespace_admin(client: TestClient) -> None:
    # `*` verbs would include `bind`; a namespace admin without it lacks cluster-admin's nonResourceURLs
    verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
    _give_sa(client, {"apiGroups": ["*"], "resources": ["*"], "verbs": verbs})
    r = client.post(BINDINGS, json=_binding("ca", "cluster-admin", kind="ClusterRole"), headers=client.sa)  # type: ignore[attr-defined]
    assert r.status_code == 403
    assert r.json()["message"].endswith('{NonResourceURLs:["*"], Verbs:["*"]}')


def test_reviews(client: TestClient) -> None:
    _give_sa(client, {**VM_GET, "resourceNames": ["vm1"]})
    sa = client.sa  # type: ignore[attr-defined]
    ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

    def can(**attrs: str) -> bool:
        body = {"spec": {"resourceAttributes": {"namespace": "ns", **attrs}}}
        r = client.post(ssar, json=body, headers=sa)
        assert r.status_code == 201, r.text
        return r.json()["status"]["allowed"]

    assert can(verb="get", group="kubevirt.io", resource="virtualmachines", name="vm1")
    assert not can(verb="get", group="kubevirt.io", resource="virtualmachines", name="vm2")
    assert not can(verb="list", group="kubevirt.io", resource="virtualmachines")
    r = client.post(ssar, json={"spec": {}}, headers=sa)
    assert r.status_code == 422
    r = client.post(
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        json={"spec": {"namespace": "ns"}},
        headers=sa,
    )
    assert r.status_code == 201
    rules = r.json()["status"]["resourceRules"]
    assert {
        "verbs": ["get"],
        "apiGroups": ["kubevirt.io"],
        "resources": ["virtualmachines"],
        "resourceNames": ["vm1"],
    } in rules
    assert client.get(ssar, headers=ADMIN_H).status_code == 405
