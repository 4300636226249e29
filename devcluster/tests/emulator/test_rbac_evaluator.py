"""The RBAC evaluator against a table of kube-apiserver's outcomes (requestinfo.go, rbac.go, rule.go)."""

from __future__ import annotations

import asyncio

import pytest

from vmbmc_devcluster.emulator.authn import ANONYMOUS_USER, service_account_user
from vmbmc_devcluster.emulator.emulator import Emulator
from vmbmc_devcluster.emulator.rbac import GROUP, forbidden_message
from vmbmc_devcluster.emulator.requestinfo import Attributes, request_attributes

SA = service_account_user("ns", "sa")


# --- request → attributes -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/ns/pods/p", {}, ("get", "", "ns", "pods", "", "p")),
        ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "", "ns", "pods", "", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "", "ns", "pods", "", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "1"}, ("watch", "", "ns", "pods", "", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "false"}, ("list", "", "ns", "pods", "", "")),
        # a metadata.name field selector names the object of a list or watch…
        (
            "GET",
            "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines",
            {"fieldSelector": "metadata.name=vm1"},
            ("list", "kubevirt.io", "ns", "virtualmachines", "", "vm1"),
        ),
        (
            "GET",
            "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines",
            {"fieldSelector": "metadata.name==vm1,metadata.namespace=ns", "watch": "true"},
            ("watch", "kubevirt.io", "ns", "virtualmachines", "", "vm1"),
        ),
        # …but not a != selector, nor another field, nor an unparsable one
        (
            "GET",
            "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines",
            {"fieldSelector": "metadata.name!=vm1"},
            ("list", "kubevirt.io", "ns", "virtualmachines", "", ""),
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods",
            {"fieldSelector": "spec.nodeName=n1"},
            ("list", "", "ns", "pods", "", ""),
        ),
        ("POST", "/api/v1/namespaces/ns/pods", {}, ("create", "", "ns", "pods", "", "")),
        ("PUT", "/api/v1/namespaces/ns/pods/p", {}, ("update", "", "ns", "pods", "", "p")),
        ("PATCH", "/api/v1/namespaces/ns/pods/p", {}, ("patch", "", "ns", "pods", "", "p")),
        ("DELETE", "/api/v1/namespaces/ns/pods/p", {}, ("delete", "", "ns", "pods", "", "p")),
        ("DELETE", "/api/v1/namespaces/ns/pods", {}, ("deletecollection", "", "ns", "pods", "", "")),
        # deletecollection never takes its name from a field selector
        (
            "DELETE",
            "/api/v1/namespaces/ns/pods",
            {"fieldSelector": "metadata.name=p"},
            ("deletecollection", "", "ns", "pods", "", ""),
        ),
        (
            "PATCH",
            "/apis/vmbmc.kubevirt.io/v1alpha1/namespaces/ns/virtualmachinebmcs/b/status",
            {},
            ("patch", "vmbmc.kubevirt.io", "ns", "virtualmachinebmcs", "status", "b"),
        ),
        (
            "PUT",
            "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachines/vm1/start",
            {},
            ("update", "subresources.kubevirt.io", "ns", "virtualmachines", "start", "vm1"),
        ),
        (
            "POST",
            "/api/v1/namespaces/ns/serviceaccounts/sa/token",
            {},
            ("create", "", "ns", "serviceaccounts", "token", "sa"),
        ),
        # a Namespace is named by /namespaces/NAME and its status is its own subresource
        ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "ns", "namespaces", "", "ns")),
        ("PUT", "/api/v1/namespaces/ns/status", {}, ("update", "", "ns", "namespaces", "status", "ns")),
        ("GET", "/api/v1/namespaces", {}, ("list", "", "", "namespaces", "", "")),
        ("GET", "/api/v1/nodes/n1", {}, ("get", "", "", "nodes", "", "n1")),
    ],
)
def test_request_attributes(method: str, path: str, query: dict, expected: tuple) -> None:
    a = request_attributes(method, path, query)
    assert a.resource_request
    assert (a.verb, a.api_group, a.namespace, a.resource, a.subresource, a.name) == expected


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [
        ("GET", "/api", "get"),
        ("GET", "/api/v1", "get"),
        ("GET", "/apis", "get"),
        ("GET", "/apis/kubevirt.io", "get"),
        ("GET", "/apis/kubevirt.io/v1", "get"),
        ("GET", "/version", "get"),
        ("GET", "/openapi/v3", "get"),
        ("POST", "/healthz", "post"),
    ],
)
def test_discovery_paths_are_non_resource(method: str, path: str, verb: str) -> None:
    a = request_attributes(method, path, {})
    assert not a.resource_request
    assert (a.verb, a.path) == (verb, path)


# --- decisions ------------------------------------------------------------------------------------------
@pytest.fixture
def emu() -> Emulator:
    asyncio.set_event_loop(asyncio.new_event_loop())  # earlier tests may have closed the loop
    e = Emulator(authorization="RBAC")
    ns_rt = e.registry.get("", "v1", "namespaces")
    e.store.create(ns_rt, {"metadata": {"name": "ns"}})
    return e


def _grant(emu: Emulator, rules: list[dict], *, cluster: bool = False, name: str = "r") -> None:
    reg, store = emu.registry, emu.store
    subject = {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}
    if cluster:
        store.create(reg.get(GROUP, "v1", "clusterroles"), {"metadata": {"name": name}, "rules": rules})
        store.create(
            reg.get(GROUP, "v1", "clusterrolebindings"),
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
                "subjects": [subject],
            },
        )
    else:
        store.create(reg.get(GROUP, "v1", "roles"), {"metadata": {"name": name}, "rules": rules}, "ns")
        store.create(
            reg.get(GROUP, "v1", "rolebindings"),
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": "sa"}],  # namespace defaults to the binding's
            },
            "ns",
        )


def _allowed(emu: Emulator, method: str, path: str, query: dict | None = None) -> bool:
    return emu.security.authorize(SA, request_attributes(method, path, query or {})).allowed


VM = "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines"
SUB = "/apis/subresources.kubevirt.io/v1/namespaces/ns/virtualmachines"
BMC = "/apis/vmbmc.kubevirt.io/v1alpha1/namespaces/ns/virtualmachinebmcs"

NAMED_VM = [
    {
        "apiGroups": ["kubevirt.io"],
        "resources": ["virtualmachines"],
        "verbs": ["get", "list", "watch", "patch"],
        "resourceNames": ["vm1"],
    }
]


@pytest.mark.parametrize(
    ("rules", "method", "path", "query", "allowed"),
    [
        # resourceNames: get by name yes, list/watch only with the matching metadata.name selector
        (NAMED_VM, "GET", f"{VM}/vm1", {}, True),
        (NAMED_VM, "GET", f"{VM}/vm2", {}, False),
        (NAMED_VM, "GET", VM, {}, False),
        (NAMED_VM, "GET", VM, {"fieldSelector": "metadata.name=vm1"}, True),
        (NAMED_VM, "GET", VM, {"fieldSelector": "metadata.name=vm1", "watch": "true"}, True),
        (NAMED_VM, "GET", VM, {"fieldSelector": "metadata.name=vm2"}, False),
        (NAMED_VM, "PATCH", f"{VM}/vm1", {}, True),
        (NAMED_VM, "DELETE", f"{VM}/vm1", {}, False),
        # create cannot be limited by name (a POST has no name)
        (
            [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"], "resourceNames": ["e"]}],
            "POST",
            "/api/v1/namespaces/ns/events",
            {},
            False,
        ),
        # subresources are their own resources: virtualmachines does not grant virtualmachines/start
        (
            [
                {
                    "apiGroups": ["kubevirt.io", "subresources.kubevirt.io"],
                    "resources": ["virtualmachines"],
                    "verbs": ["*"],
                }
            ],
            "PUT",
            f"{SUB}/vm1/start",
            {},
            False,
        ),
        (
            [
                {
                    "apiGroups": ["subresources.kubevirt.io"],
                    "resources": ["virtualmachines/start"],
                    "verbs": ["update"],
                }
            ],
            "PUT",
            f"{SUB}/vm1/start",
            {},
            True,
        ),
        # …in the subresources group only
        (
            [{"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines/start"], "verbs": ["update"]}],
            "PUT",
            f"{SUB}/vm1/start",
            {},
            False,
        ),
        (
            [
                {
                    "apiGroups": ["subresources.kubevirt.io"],
                    "resources": ["virtualmachines/start"],
                    "verbs": ["update"],
                }
            ],
            "PUT",
            f"{SUB}/vm1/stop",
            {},
            False,
        ),
        (
            [
                {
                    "apiGroups": ["vmbmc.kubevirt.io"],
                    "resources": ["virtualmachinebmcs/status"],
                    "verbs": ["patch"],
                }
            ],
            "PATCH",
            f"{BMC}/b/status",
            {},
            True,
        ),
        (
            [
                {
                    "apiGroups": ["vmbmc.kubevirt.io"],
                    "resources": ["virtualmachinebmcs/status"],
                    "verbs": ["patch"],
                }
            ],
            "PATCH",
            f"{BMC}/b",
            {},
            False,
        ),
        # wildcards: * resources covers subresources, */status covers every status
        ([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}], "GET", f"{BMC}/b/status", {}, True),
        (
            [{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]}],
            "GET",
            f"{BMC}/b/status",
            {},
            True,
        ),
        ([{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]}], "GET", f"{BMC}/b", {}, False),
        ([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}], "PATCH", f"{BMC}/b", {}, False),
        # unknown verbs are stored but match nothing
        ([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["frobnicate"]}], "GET", f"{VM}/vm1", {}, False),
        # apiGroups "" is the core group only
        ([{"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}], "GET", f"{VM}/vm1", {}, False),
        (
            [{"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}],
            "GET",
            "/api/v1/namespaces/ns/secrets/s",
            {},
            True,
        ),
    ],
)
def test_namespaced_rules(
    emu: Emulator, rules: list, method: str, path: str, query: dict, allowed: bool
) -> None:
    _grant(emu, rules)
    assert _allowed(emu, method, path, query) is allowed


def test_a_role_binding_grants_nothing_outside_its_namespace(emu: Emulator) -> None:
    emu.store.create(emu.registry.get("", "v1", "namespaces"), {"metadata": {"name": "other"}})
    _grant(emu, [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
    assert _allowed(emu, "GET", f"{VM}/vm1")
    assert not _allowed(emu, "GET", "/apis/kubevirt.io/v1/namespaces/other/virtualmachines/vm1")
    assert not _allowed(emu, "GET", "/apis/kubevirt.io/v1/virtualmachines")  # all namespaces
    assert not _allowed(emu, "GET", "/api/v1/nodes")


def test_cluster_role_binding_grants_everywhere_and_non_resource_urls(emu: Emulator) -> None:
    _grant(
        emu,
        [
            {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "verbs": ["list"]},
            {"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]},
        ],
        cluster=True,
    )
    assert _allowed(emu, "GET", "/apis/kubevirt.io/v1/virtualmachines")
    assert _allowed(emu, "GET", "/apis/kubevirt.io/v1/namespaces/any/virtualmachines")
    assert _allowed(emu, "GET", "/metrics")
    assert _allowed(emu, "GET", "/logs/a/b")
    assert not _allowed(emu, "GET", "/logs")
    assert not _allowed(emu, "POST", "/metrics")


def test_role_binding_to_cluster_role_is_scoped_to_its_namespace(emu: Emulator) -> None:
    reg = emu.registry
    emu.store.create(
        reg.get(GROUP, "v1", "clusterroles"),
        {
            "metadata": {"name": "vm-reader"},
            "rules": [{"apiGroups": ["kubevirt.io"], "resources": ["*"], "verbs": ["get"]}],
        },
    )
    emu.store.create(
        reg.get(GROUP, "v1", "rolebindings"),
        {
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "vm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}],
        },
        "ns",
    )
    assert _allowed(emu, "GET", f"{VM}/vm1")
    assert not _allowed(emu, "GET", "/apis/kubevirt.io/v1/namespaces/other/virtualmachines/vm1")


def test_aggregated_cluster_role(emu: Emulator) -> None:
    reg = emu.registry
    roles = reg.get(GROUP, "v1", "clusterroles")
    emu.store.create(
        roles,
        {
            "metadata": {"name": "part", "labels": {"agg": "yes"}},
            "rules": [{"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "verbs": ["get"]}],
        },
    )
    emu.store.create(
        roles,
        {
            "metadata": {"name": "whole"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]},
        },
    )
    emu.store.create(
        reg.get(GROUP, "v1", "clusterrolebindings"),
        {
            "metadata": {"name": "whole"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "whole"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}],
        },
    )
    assert _allowed(emu, "GET", f"{VM}/vm1")
    assert not _allowed(emu, "DELETE", f"{VM}/vm1")


def test_defaults_discovery_for_authenticated_public_info_for_anonymous(emu: Emulator) -> None:
    for path in ("/api", "/api/v1", "/apis", "/apis/kubevirt.io/v1", "/openapi/v3", "/version"):
        assert _allowed(emu, "GET", path), path
    authorize = emu.security.authorize
    assert authorize(ANONYMOUS_USER, request_attributes("GET", "/version", {})).allowed
    assert authorize(ANONYMOUS_USER, request_attributes("GET", "/healthz", {})).allowed
    assert not authorize(ANONYMOUS_USER, request_attributes("GET", "/api", {})).allowed
    ssar = request_attributes("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {})
    assert authorize(SA, ssar).allowed
    assert not authorize(ANONYMOUS_USER, ssar).allowed


def test_binding_to_a_missing_role_denies_with_the_resolution_error(emu: Emulator) -> None:
    emu.store.create(
        emu.registry.get(GROUP, "v1", "rolebindings"),
        {
            "metadata": {"name": "dangling"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "missing"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}],
        },
        "ns",
    )
    attrs = request_attributes("GET", f"{VM}/vm1", {})
    decision = emu.security.authorize(SA, attrs)
    assert not decision.allowed
    assert decision.reason == f'RBAC: role.{GROUP} "missing" not found'
    assert forbidden_message(SA, attrs, decision.reason) == (
        'virtualmachines.kubevirt.io "vm1" is forbidden: User "system:serviceaccount:ns:sa" cannot get '
        'resource "virtualmachines" in API group "kubevirt.io" in the namespace "ns": '
        f'RBAC: role.{GROUP} "missing" not found'
    )


def test_allow_reason_names_the_binding(emu: Emulator) -> None:
    _grant(
        emu, [{"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "verbs": ["get"]}], name="vm"
    )
    decision = emu.security.authorize(SA, request_attributes("GET", f"{VM}/vm1", {}))
    assert decision.reason == 'RBAC: allowed by RoleBinding "vm/ns" of Role "vm" to ServiceAccount "sa/ns"'


# --- the 403 wording ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        (
            request_attributes("PATCH", f"{VM}/x", {}),
            'virtualmachines.kubevirt.io "x" is forbidden: User "system:serviceaccount:ns:sa" cannot patch '
            'resource "virtualmachines" in API group "kubevirt.io" in the namespace "ns"',
        ),
        (
            request_attributes("GET", VM, {}),
            'virtualmachines.kubevirt.io is forbidden: User "system:serviceaccount:ns:sa" cannot list '
            'resource "virtualmachines" in API group "kubevirt.io" in the namespace "ns"',
        ),
        (
            request_attributes("PUT", f"{SUB}/vm1/start", {}),
            'virtualmachines.subresources.kubevirt.io "vm1" is forbidden: User "system:serviceaccount:ns:sa" '
            'cannot update resource "virtualmachines/start" in API group "subresources.kubevirt.io" in the '
            'namespace "ns"',
        ),
        (
            request_attributes("GET", "/api/v1/namespaces/ns/secrets", {}),
            'secrets is forbidden: User "system:serviceaccount:ns:sa" cannot list resource "secrets" in API '
            'group "" in the namespace "ns"',
        ),
        (
            request_attributes("GET", "/api/v1/nodes", {}),
            'nodes is forbidden: User "system:serviceaccount:ns:sa" cannot list resource "nodes" in API '
            'group "" at the cluster scope',
        ),
        (
            Attributes(verb="get", path="/metrics"),
            'forbidden: User "system:serviceaccount:ns:sa" cannot get path "/metrics"',
        ),
    ],
)
def test_forbidden_message(attrs: Attributes, message: str) -> None:
    assert forbidden_message(SA, attrs) == message
