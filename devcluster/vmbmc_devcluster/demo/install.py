"""Installing what vmbmc ships into the demo's cluster, as `kubectl apply -k deploy/` would: the objects
of `deploy/` (rendered by vmbmc.kustomize, so no kubectl binary is needed) created through the API as
the admin, in kustomize's order. The controller then runs from its Deployment's pod, like any pod."""

from __future__ import annotations

import copy
from typing import Any

from vmbmc.k8s.client import ApiClient, ApiError

# kind -> (plural, namespaced), for the kinds deploy/ holds
KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "ServiceAccount": ("serviceaccounts", True),
    "ConfigMap": ("configmaps", True),
    "Secret": ("secrets", True),
    "Service": ("services", True),
    "Role": ("roles", True),
    "ClusterRole": ("clusterroles", False),
    "RoleBinding": ("rolebindings", True),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Deployment": ("deployments", True),
    "NetworkPolicy": ("networkpolicies", True),
}


def collection_path(obj: dict[str, Any]) -> str:
    kind, api_version = obj["kind"], obj["apiVersion"]
    if kind not in KINDS:
        raise ValueError(f"vmbmc demo cannot install a {kind} (known: {', '.join(KINDS)})")
    plural, namespaced = KINDS[kind]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced:
        return f"{prefix}/namespaces/{obj['metadata']['namespace']}/{plural}"
    return f"{prefix}/{plural}"


async def apply_all(api: ApiClient, objects: list[dict[str, Any]]) -> None:
    """Create each object in order; one that exists already is left as it is."""
    for obj in objects:
        try:
            await api.request("POST", collection_path(obj), body=obj)
        except ApiError as err:
            if err.code != 409:
                raise


def with_controller_args(objects: list[dict[str, Any]], extra: list[str]) -> list[dict[str, Any]]:
    """`objects` with `extra` appended to the controller container's args (what an overlay would do)."""
    out = copy.deepcopy(objects)
    for obj in out:
        if obj.get("kind") == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                container["args"] = [*(container.get("args") or []), *extra]
    return out
