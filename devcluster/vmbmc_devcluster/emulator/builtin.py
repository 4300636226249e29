"""The built-in resource types this project and its clients use (a subset of kube-apiserver's)."""

from __future__ import annotations

from typing import Any

from vmbmc_devcluster.emulator.events import event_admission
from vmbmc_devcluster.emulator.registry import Registry, ResourceType

_STATUS = frozenset({"status"})

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, "namespace", ("ns",), subresources=_STATUS),
    ResourceType("", "v1", "pods", "Pod", True, "pod", ("po",), ("all",), subresources=_STATUS),
    ResourceType("", "v1", "services", "Service", True, "service", ("svc",), ("all",), subresources=_STATUS),
    ResourceType("", "v1", "endpoints", "Endpoints", True, "endpoints", ("ep",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, "serviceaccount", ("sa",)),
    ResourceType("", "v1", "secrets", "Secret", True, "secret"),
    ResourceType(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        True,
        "persistentvolumeclaim",
        ("pvc",),
        subresources=_STATUS,
    ),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, "configmap", ("cm",)),
    ResourceType("", "v1", "events", "Event", True, "event", ("ev",)),
    ResourceType("", "v1", "nodes", "Node", False, "node", ("no",), subresources=_STATUS),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, "event", ("ev",)),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        "deployment",
        ("deploy",),
        ("all",),
        subresources=frozenset({"status", "scale"}),
    ),
    ResourceType(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        True,
        "replicaset",
        ("rs",),
        ("all",),
        subresources=frozenset({"status", "scale"}),
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True, "role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, "rolebinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, "clusterrole"),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        False,
        "clusterrolebinding",
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, "lease"),
    ResourceType(
        "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, "networkpolicy", ("netpol",)
    ),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, "endpointslice"),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        "customresourcedefinition",
        ("crd", "crds"),
        subresources=_STATUS,
    ),
)

# core/v1 and events.k8s.io/v1 Events are one store seen through two APIs, as in kube-apiserver.
SHARED_STORAGE = {("events.k8s.io", "events"): ("", "events")}


def register_builtins(registry: Registry) -> None:
    for rt in BUILTIN_TYPES:
        registry.register(rt)


def _default_secret(obj: dict, old: dict | None) -> dict:
    """kube-apiserver's Secret defaulting and conversion: `type` defaults to Opaque, and the write-only
    `stringData` is merged into `data` (base64), winning over the same key there."""
    import base64

    if not obj.get("type"):
        obj["type"] = "Opaque"
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = dict(obj.get("data") or {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    return obj


def install_builtin_defaults(store: Any) -> None:
    store.admission_hooks.setdefault(("", "secrets"), []).append(_default_secret)
    for rt in BUILTIN_TYPES:
        if rt.plural == "events":
            store.admission_hooks.setdefault(rt.key, []).append(event_admission(rt))
