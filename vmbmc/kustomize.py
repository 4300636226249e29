"""A small kustomize: renders the kustomizations this project ships (`deploy/`, `crds/`) without a
`kubectl` binary (a wheel has none), object for object as `kubectl kustomize` does.

It knows the fields they use: `resources` (files and directories holding a kustomization), `namespace`
and `images`. Any other field is refused, so a kustomization that grows beyond this fails loudly (the
tests compare the output with `kubectl kustomize`) instead of rendering something else.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources.abc import Traversable
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KNOWN_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images"}

# Cluster-scoped kinds: the namespace transformer leaves them alone.
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}

# kustomize's legacy output order (what `kubectl kustomize` prints): these kinds first, in this order,
# then every other kind, then the webhooks.
ORDER_FIRST = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


class KustomizeError(ValueError):
    pass


class _Dir:
    """A directory below `root`, addressed by path parts, so `../crds` works inside a package too."""

    def __init__(self, root: Traversable, parts: tuple[str, ...] = ()) -> None:
        self.root, self.parts = root, parts

    def node(self, *more: str) -> Traversable:
        node = self.root
        for part in (*self.parts, *more):
            node = node.joinpath(part)
        return node

    def resolve(self, relative: str) -> tuple[str, ...]:
        parts = list(self.parts)
        for piece in relative.split("/"):
            if piece in ("", "."):
                continue
            if piece == "..":
                if not parts:
                    raise KustomizeError(f"{relative!r} leaves the manifests' root")
                parts.pop()
            else:
                parts.append(piece)
        return tuple(parts)

    def __str__(self) -> str:
        return "/".join(self.parts) or "."


def render(root: Traversable, path: str = ".") -> list[dict[str, Any]]:
    """The objects of the kustomization in `root`/`path`, in `kubectl kustomize`'s order."""
    objects = _build(_Dir(root, _Dir(root).resolve(path)), seen=())
    return sorted(objects, key=_order)


def _kustomization(d: _Dir) -> dict[str, Any]:
    for name in KUSTOMIZATION_FILES:
        node = d.node(name)
        if node.is_file():
            doc = yaml.safe_load(node.read_text()) or {}
            unknown = set(doc) - KNOWN_FIELDS
            if unknown:
                raise KustomizeError(f"{d}/{name}: fields {sorted(unknown)} are not supported here")
            return dict(doc)
    raise KustomizeError(f"{d}: no kustomization.yaml")


def _build(d: _Dir, seen: tuple[tuple[str, ...], ...]) -> list[dict[str, Any]]:
    if d.parts in seen:
        raise KustomizeError(f"{d}: kustomizations include each other")
    k = _kustomization(d)
    objects: list[dict[str, Any]] = []
    for entry in k.get("resources") or []:
        parts = d.resolve(str(entry))
        target = _Dir(d.root, parts)
        node = target.node()
        if node.is_dir():
            objects.extend(_build(target, (*seen, d.parts)))
        elif node.is_file():
            objects.extend(doc for doc in yaml.safe_load_all(node.read_text()) if doc)
        else:
            raise KustomizeError(f"{d}: resource {entry!r} not found")
    if k.get("namespace"):
        for obj in objects:
            _set_namespace(obj, str(k["namespace"]))
    for image in k.get("images") or []:
        for obj in objects:
            for container in _containers(obj):
                container["image"] = _retag(container.get("image"), image)
    return objects


def _set_namespace(obj: dict[str, Any], namespace: str) -> None:
    if obj.get("kind") == "Namespace":  # kustomize renames the Namespace object itself
        obj.setdefault("metadata", {})["name"] = namespace
    elif obj.get("kind") not in CLUSTER_SCOPED:
        obj.setdefault("metadata", {})["namespace"] = namespace
    if obj.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
        # kustomize's default (`defaultOnly`): only the "default" ServiceAccount follows the namespace
        for subject in obj.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and subject.get("name") == "default":
                subject["namespace"] = namespace


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container and init container anywhere in the object (Pods, templates, job templates)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; a port in the registry host is not a tag."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _retag(ref: Any, rule: dict[str, Any]) -> Any:
    if not isinstance(ref, str):
        return ref
    name, tag, digest = split_image(ref)
    if name != rule.get("name"):
        return ref
    name = str(rule.get("newName") or name)
    if rule.get("digest"):
        return f"{name}@{rule['digest']}"
    if rule.get("newTag"):
        return f"{name}:{rule['newTag']}"
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _order(obj: dict[str, Any]) -> tuple[int, str, str, str]:
    kind = str(obj.get("kind"))
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind)
    else:
        rank = len(ORDER_FIRST)
    meta = obj.get("metadata") or {}
    gvk = f"{obj.get('apiVersion')}/{kind}"
    return rank, gvk, str(meta.get("namespace") or ""), str(meta.get("name") or "")
