"""The bootstrap ClusterRoles and ClusterRoleBindings kube-apiserver creates (plugin/pkg/auth/
authorizer/rbac/bootstrappolicy), reduced to the ones that matter without a kubelet or controllers.

They exist in every authorization mode, as in any cluster, so flipping the emulator to RBAC changes
decisions, not the stored objects.
"""

from __future__ import annotations

from typing import Any

from vmbmc_devcluster.emulator.rbac import GROUP

_META_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_META_ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}

DISCOVERY_URLS = [
    "/livez",
    "/readyz",
    "/healthz",
    "/version",
    "/version/",
    "/openapi",
    "/openapi/*",
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
]
PUBLIC_INFO_URLS = ["/livez", "/readyz", "/healthz", "/version", "/version/"]

CLUSTER_ROLES: dict[str, list[dict[str, Any]]] = {
    "cluster-admin": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"nonResourceURLs": ["*"], "verbs": ["*"]},
    ],
    "system:discovery": [{"nonResourceURLs": DISCOVERY_URLS, "verbs": ["get"]}],
    "system:public-info-viewer": [{"nonResourceURLs": PUBLIC_INFO_URLS, "verbs": ["get"]}],
    "system:basic-user": [
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            "verbs": ["create"],
        },
        {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
    ],
}

# binding name → (role, groups)
CLUSTER_ROLE_BINDINGS: dict[str, tuple[str, list[str]]] = {
    "cluster-admin": ("cluster-admin", ["system:masters"]),
    "system:discovery": ("system:discovery", ["system:authenticated"]),
    "system:basic-user": ("system:basic-user", ["system:authenticated"]),
    "system:public-info-viewer": (
        "system:public-info-viewer",
        ["system:authenticated", "system:unauthenticated"],
    ),
}


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "labels": dict(_META_LABELS), "annotations": dict(_META_ANNOTATIONS)}


def install_bootstrap_policy(emulator: Any) -> None:
    roles = emulator.registry.get(GROUP, "v1", "clusterroles")
    bindings = emulator.registry.get(GROUP, "v1", "clusterrolebindings")
    for name, rules in CLUSTER_ROLES.items():
        if emulator.store.try_get(roles, None, name) is None:
            emulator.store.create(roles, {"metadata": _meta(name), "rules": rules})
    for name, (role, groups) in CLUSTER_ROLE_BINDINGS.items():
        if emulator.store.try_get(bindings, None, name) is None:
            subjects = [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups]
            emulator.store.create(
                bindings,
                {
                    "metadata": _meta(name),
                    "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
                    "subjects": subjects,
                },
            )
