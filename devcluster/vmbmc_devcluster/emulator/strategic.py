"""Strategic merge patch (``application/strategic-merge-patch+json``) for the built-in kinds vmbmc patches.

Public API:

    strategic_merge(original, patch, kind) -> dict
        A new object: ``patch`` applied to ``original`` (neither is modified) as
        k8s.io/apimachinery/pkg/util/strategicpatch does for ``kind`` ("Deployment", "Pod", ...).
        Raises StrategicMergeError (a ValueError; answer 400 BadRequest) for a malformed patch.
    list_strategy(kind, path) -> tuple[str | None, str]
        ``(patchMergeKey, patchStrategy)`` of the list at ``path`` (field names from the object root, list
        positions left out, e.g. ``("spec", "template", "spec", "containers", "env")``). The strategy is
        "merge" or "replace"; lists outside MERGE_KEYS get "replace" with no key, as JSON merge patch does.

What is implemented (the Kubernetes directives):
- Maps merge recursively; ``null`` deletes a key; scalars and lists without a merge strategy are replaced.
- Lists with patchStrategy merge: elements of maps are matched by their patchMergeKey and merged; new
  elements are appended in patch order; ``{"<key>": x, "$patch": "delete"}`` removes the element; an element
  ``{"$patch": "replace"}`` makes the rest of the patch list replace the whole list. Lists of scalars with
  strategy merge (``metadata.finalizers``) are unioned (original order first, no duplicates).
- ``$patch: replace`` (the map replaces the original map), ``$patch: delete`` (the key is removed),
  ``$patch: merge`` (explicit default) inside maps.
- ``$retainKeys: [..]``: keys of the original map not listed (and not in the patch) are dropped.
- ``$deleteFromPrimitiveList/<field>: [..]``: those values are removed from the scalar list.
- ``$setElementOrder/<field>: [..]``: the merged list is ordered as given (by merge key for maps, by value
  for scalars); elements not named there follow in their merged order (upstream interleaves them by their
  original position instead).

Merge keys (MERGE_KEYS, from the API types' ``patchMergeKey``/``patchStrategy`` tags), list -> key:
- every kind: metadata.ownerReferences -> uid; metadata.finalizers -> scalars merged as a set.
- PodSpec (Pod ``spec``; ``spec.template.spec`` of Deployment, ReplicaSet, StatefulSet, DaemonSet, Job;
  PodTemplate ``template.spec``): containers, initContainers, ephemeralContainers, volumes,
  imagePullSecrets, schedulingGates, resourceClaims -> name; hostAliases -> ip;
  topologySpreadConstraints -> topologyKey.
- Container (each of the three container lists): env -> name; ports -> containerPort;
  volumeMounts -> mountPath; volumeDevices -> devicePath.
- status.conditions -> type (Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, Service,
  Namespace, Node, PersistentVolumeClaim).
- Service spec.ports -> port.  ServiceAccount secrets, imagePullSecrets -> name.

Replaced (atomic) lists: tolerations, args, command, envFrom, Role/ClusterRole rules, RoleBinding
subjects, NetworkPolicy ingress/egress/policyTypes, Service externalIPs, Endpoints subsets, Namespace
spec.finalizers, and every list of a kind not named above (Secret, ConfigMap, Event, Lease have no list
to merge besides metadata's).
"""

from __future__ import annotations

import copy
import json
from typing import Any

__all__ = ["MERGE_KEYS", "StrategicMergeError", "list_strategy", "strategic_merge"]

Path = tuple[str, ...]

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
SET_ORDER = "$setElementOrder/"


class StrategicMergeError(ValueError):
    pass


def _container_keys(prefix: Path) -> dict[Path, str]:
    return {
        prefix: "name",
        (*prefix, "env"): "name",
        (*prefix, "ports"): "containerPort",
        (*prefix, "volumeMounts"): "mountPath",
        (*prefix, "volumeDevices"): "devicePath",
    }


def _pod_spec_keys(prefix: Path) -> dict[Path, str]:
    keys: dict[Path, str] = {}
    for containers in ("containers", "initContainers", "ephemeralContainers"):
        keys.update(_container_keys((*prefix, containers)))
    for field in ("volumes", "imagePullSecrets", "schedulingGates", "resourceClaims"):
        keys[(*prefix, field)] = "name"
    keys[(*prefix, "hostAliases")] = "ip"
    keys[(*prefix, "topologySpreadConstraints")] = "topologyKey"
    return keys


_CONDITIONS = {("status", "conditions"): "type"}
_TEMPLATE = ("spec", "template", "spec")

# kind -> {path of a list: merge key}; "" as key = a list of scalars merged as a set.
MERGE_KEYS: dict[str, dict[Path, str]] = {
    "Pod": {**_pod_spec_keys(("spec",)), **_CONDITIONS},
    "PodTemplate": _pod_spec_keys(("template", "spec")),
    "Deployment": {**_pod_spec_keys(_TEMPLATE), **_CONDITIONS},
    "ReplicaSet": {**_pod_spec_keys(_TEMPLATE), **_CONDITIONS},
    "StatefulSet": {**_pod_spec_keys(_TEMPLATE), **_CONDITIONS},
    "DaemonSet": {**_pod_spec_keys(_TEMPLATE), **_CONDITIONS},
    "Job": {**_pod_spec_keys(_TEMPLATE), **_CONDITIONS},
    "Service": {("spec", "ports"): "port", **_CONDITIONS},
    "ServiceAccount": {("secrets",): "name", ("imagePullSecrets",): "name"},
    "Namespace": dict(_CONDITIONS),
    "Node": dict(_CONDITIONS),
    "PersistentVolumeClaim": dict(_CONDITIONS),
}
_COMMON: dict[Path, str] = {("metadata", "ownerReferences"): "uid", ("metadata", "finalizers"): ""}


def list_strategy(kind: str, path: Path) -> tuple[str | None, str]:
    """(patchMergeKey, patchStrategy) for the list at ``path`` of ``kind``."""
    path = tuple(path)
    key = _COMMON.get(path)
    if key is None:
        key = MERGE_KEYS.get(kind, {}).get(path)
    if key is None:
        return None, "replace"
    return (key or None), "merge"


def strategic_merge(original: dict, patch: Any, kind: str) -> dict:
    """Apply a strategic merge patch to ``original`` for an object of ``kind``."""
    if not isinstance(patch, dict):
        raise StrategicMergeError(f"strategic merge patch must be a JSON object, got {_json_type(patch)}")
    if not isinstance(original, dict):
        raise StrategicMergeError("original object must be a JSON object")
    merged = _merge_map(copy.deepcopy(original), patch, kind, ())
    return merged if merged is not None else {}


def _json_type(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number"
    )


def _merge_map(original: dict, patch: dict, kind: str, path: Path) -> dict | None:
    """Merged map, or None when the patch deletes it (``$patch: delete``)."""
    directive = patch.get(DIRECTIVE)
    if directive is not None:
        if directive == "delete":
            return None
        if directive == "replace":
            return _strip(patch)
        if directive != "merge":
            raise StrategicMergeError(f"Unknown patch type: {directive} in map: {json.dumps(patch)}")
    if RETAIN_KEYS in patch:
        retain = patch[RETAIN_KEYS]
        if not isinstance(retain, list):
            raise StrategicMergeError(f"invalid $retainKeys {json.dumps(retain)}: must be a list")
        keep = set(retain) | {k for k in patch if not k.startswith("$")}
        for k in list(original):
            if k not in keep:
                del original[k]

    # Deletions from scalar lists come before the merge of the same field, as upstream.
    for k, v in patch.items():
        if k.startswith(DELETE_PRIMITIVE):
            field = k[len(DELETE_PRIMITIVE) :]
            if not isinstance(v, list):
                raise StrategicMergeError(f"{k} must be a list")
            if isinstance(original.get(field), list):
                original[field] = [x for x in original[field] if x not in v]

    for k, v in patch.items():
        if k.startswith("$"):
            continue
        sub_path = (*path, k)
        if v is None:
            original.pop(k, None)
        elif isinstance(v, dict):
            base = original.get(k)
            merged = _merge_map(base if isinstance(base, dict) else {}, v, kind, sub_path)
            if merged is None:
                original.pop(k, None)
            else:
                original[k] = merged
        elif isinstance(v, list):
            base = original.get(k)
            original[k] = _merge_list(base if isinstance(base, list) else None, v, kind, sub_path)
        else:
            original[k] = copy.deepcopy(v)

    for k, v in patch.items():
        if k.startswith(SET_ORDER):
            field = k[len(SET_ORDER) :]
            if not isinstance(v, list):
                raise StrategicMergeError(f"{k} must be a list")
            if isinstance(original.get(field), list):
                key, _ = list_strategy(kind, (*path, field))
                original[field] = _order(original[field], v, key)
    return original


def _strip(value: Any) -> Any:
    """A patch value without directives, as it is stored when it replaces or adds."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and DIRECTIVE in v and len(v) == 1)]
    return value


def _merge_list(original: list | None, patch: list, kind: str, path: Path) -> list:
    key, strategy = list_strategy(kind, path)
    if strategy != "merge":
        return _strip(patch)
    # An element {"$patch": "replace"} replaces the whole list with the rest of the patch list.
    if any(isinstance(x, dict) and x.get(DIRECTIVE) == "replace" for x in patch):
        return [_strip(x) for x in patch if not (isinstance(x, dict) and DIRECTIVE in x)]
    result = copy.deepcopy(original) if original is not None else []
    if key is None:
        for x in patch:
            if isinstance(x, dict | list):
                raise StrategicMergeError(f"list at {'.'.join(path)} holds scalars, got {json.dumps(x)}")
            if x not in result:
                result.append(x)
        return result
    for item in patch:
        if not isinstance(item, dict):
            raise StrategicMergeError(f"list at {'.'.join(path)} holds objects, got {json.dumps(item)}")
        if key not in item:
            raise StrategicMergeError(f"map: {json.dumps(item)} does not contain declared merge key: {key}")
        index = next(
            (i for i, x in enumerate(result) if isinstance(x, dict) and x.get(key) == item[key]), None
        )
        directive = item.get(DIRECTIVE)
        if directive == "delete":
            result = [x for x in result if not (isinstance(x, dict) and x.get(key) == item[key])]
            continue
        if directive not in (None, "merge", "replace"):
            raise StrategicMergeError(f"Unknown patch type: {directive} in map: {json.dumps(item)}")
        if index is None:
            result.append(_strip(item))
        elif directive == "replace":
            result[index] = _strip(item)
        else:
            merged = _merge_map(result[index], item, kind, path)
            result[index] = merged if merged is not None else {}
    return result


def _order(merged: list, order: list, key: str | None) -> list:
    def ident(x: Any) -> Any:
        return json.dumps(x.get(key) if key and isinstance(x, dict) else x, sort_keys=True)

    wanted = [ident(x) for x in order]
    placed = [x for w in wanted for x in merged if ident(x) == w]
    rest = [x for x in merged if ident(x) not in wanted]
    return placed + rest
