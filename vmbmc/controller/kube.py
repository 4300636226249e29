"""The controller's API calls: create-or-patch of children, the BMC's status, Events (on ApiClient)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from vmbmc import naming as n
from vmbmc.controller.conditions import condition as condition  # re-exported: reconcile's helper
from vmbmc.controller.conditions import merge
from vmbmc.k8s import clock
from vmbmc.k8s.client import MERGE_PATCH, ApiClient, ApiError
from vmbmc.k8s.events import create_event, event_body, involved
from vmbmc.k8s.status import guarded_patch

log = logging.getLogger(__name__)

# (apiVersion, kind) -> (path prefix, plural)
_PATHS: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Secret": ("/api/v1", "secrets"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Service": ("/api/v1", "services"),
    "Event": ("/api/v1", "events"),
    "Pod": ("/api/v1", "pods"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
    n.KIND: (f"/apis/{n.GROUP}/{n.VERSION}", n.PLURAL),
    "VirtualMachine": ("/apis/kubevirt.io/v1", "virtualmachines"),
    "VirtualMachineInstance": ("/apis/kubevirt.io/v1", "virtualmachineinstances"),
    "DataVolume": ("/apis/cdi.kubevirt.io/v1beta1", "datavolumes"),
}
CONFLICT_RETRIES = 8  # create-or-patch races (apply)


def path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    prefix, plural = _PATHS[kind]
    p = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{p}/{name}" if name else p


async def get(api: ApiClient, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    try:
        return await api.request("GET", path(kind, namespace, name))
    except ApiError as err:
        if err.code == 404:
            return None
        raise


async def delete(api: ApiClient, kind: str, namespace: str | None, name: str) -> bool:
    """Delete; False if it was already gone."""
    try:
        await api.request("DELETE", path(kind, namespace, name))
        return True
    except ApiError as err:
        if err.code == 404:
            return False
        raise


async def list_items(
    api: ApiClient,
    kind: str,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> list[dict[str, Any]]:
    params = {"labelSelector": label_selector} if label_selector else {}
    if field_selector:  # `metadata.name=x`: how a list is limited to a name RBAC grants by name
        params["fieldSelector"] = field_selector
    out = await api.request("GET", path(kind, namespace), params=params or None)
    return list((out or {}).get("items") or [])


def contains(existing: Any, desired: Any) -> bool:
    """Whether `existing` already holds everything `desired` says (server defaults may add more).

    Lists must match element by element: a merge patch replaces them wholesale, so a list that differs
    in length or in any element is written again."""
    if isinstance(desired, Mapping):
        return isinstance(existing, Mapping) and all(contains(existing.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(existing, list)
            and len(existing) == len(desired)
            and all(contains(e, d) for e, d in zip(existing, desired, strict=True))
        )
    return bool(existing == desired)


def _without_nulls(obj: Any) -> Any:
    """`obj` without its null map values: in a merge patch they remove a key, in a create they mean
    nothing (a selector's other-mode keys, vmbmc.controller.children)."""
    if isinstance(obj, Mapping):
        return {k: _without_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_nulls(v) for v in obj]
    return obj


def _patch_body(existing: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "metadata")}
    meta = desired.get("metadata") or {}
    body["metadata"] = {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta}
    return body


async def apply(
    api: ApiClient, desired: dict[str, Any], *, create_only: bool = False, likely_new: bool = False
) -> dict[str, Any]:
    """Create `desired`, or bring the existing object up to it with a merge patch (nothing if it holds
    it already). `create_only`: an existing object is kept as it is (generated Secrets). `likely_new`:
    the create is tried before any read (a BMC never reconciled has no children yet: one request, not
    a read answering 404 and then a create); an existing object costs a 409 and the usual read."""
    kind, meta = desired["kind"], desired["metadata"]
    ns, name = meta.get("namespace"), meta["name"]
    for attempt in range(CONFLICT_RETRIES):
        existing = None if likely_new and attempt == 0 else await get(api, kind, ns, name)
        if existing is None:
            created = await api.create(path(kind, ns), _without_nulls(desired))
            if created is not None:
                return dict(created)
            continue  # 409: created meanwhile (another worker, a re-list, a lost answer): read it again
        if create_only or contains(existing, _patch_body(existing, desired)):
            return existing
        log.info("updating %s %s/%s", kind, ns, name)
        return dict(
            await api.request(
                "PATCH", path(kind, ns, name), body=_patch_body(existing, desired), content_type=MERGE_PATCH
            )
        )
    raise ApiError(409, "Conflict", f"{kind} {ns}/{name}: gave up after repeated conflicts")


def _field_patch(status: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that makes `status` hold `fields`. A None inside a dict value removes that key;
    a dict left empty removes the whole field."""
    patch: dict[str, Any] = {}
    for key, value in fields.items():
        old = status.get(key)
        if isinstance(value, Mapping):
            clean = {k: v for k, v in value.items() if v is not None}
            if (old or {}) == clean and (clean or old is None):
                continue
            if clean:
                patch[key] = {**{k: None for k in (old or {}) if k not in clean}, **clean}
            else:
                patch[key] = None
        elif old != value:
            patch[key] = value
    return patch


StatusFields = tuple[Mapping[str, Any], list[dict[str, Any]]]


def status_patch(
    bmc: dict[str, Any], compute: Callable[[dict[str, Any]], StatusFields], remove: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """The merge patch that makes this BMC version's status hold `compute(bmc)` → (fields, conditions)
    and lack the keys `remove`; None when it holds them already."""
    status = bmc.get("status") or {}
    gen = (bmc.get("metadata") or {}).get("generation")
    fields, conditions = compute(bmc)
    patch = _field_patch(status, fields)
    for key in remove:
        if key in status:
            patch[key] = None
    if conditions:
        merged = merge(status.get("conditions") or [], list(conditions), clock.rfc3339(), gen)
        if merged != (status.get("conditions") or []):
            patch["conditions"] = merged
    return {"status": patch} if patch else None


async def update_status(
    api: ApiClient,
    namespace: str,
    name: str,
    compute: Callable[[dict[str, Any]], StatusFields],
    *,
    remove: tuple[str, ...] = (),
) -> bool:
    """Write the controller's own status fields, `compute(bmc)` → (fields, conditions) from the very BMC
    version the patch is guarded with (resourceVersion, retried on 409: see vmbmc.k8s.status), so a
    field that depends on others (`ready`) is decided from what is stored. Only our keys are sent: the
    recorder and the kbmc own the rest. Returns False when the BMC is gone. Skips the write when nothing
    would change."""
    written = await guarded_patch(
        api,
        path(n.KIND, namespace, name),
        lambda bmc: status_patch(bmc, compute, remove),
        subresource="status",
    )
    return written is not None


async def emit_event(
    api: ApiClient,
    obj: Mapping[str, Any],
    *,
    key: str,
    type_: str,
    reason: str,
    message: str,
    instance: str,
) -> None:
    """An Event about `obj` (a BMC unless it says otherwise) named `<obj>.<key>`: written once (a 409 means
    it is there). A failure is logged: these Events are not the power history."""
    meta = obj.get("metadata") or {}
    body = event_body(
        name=f"{meta['name']}.{key}",
        about=involved(obj, f"{n.GROUP}/{n.VERSION}", n.KIND),
        type_=type_,
        reason=reason,
        message=message,
        action="Reconcile",
        component=n.MANAGED_BY,
        instance=instance,
    )
    try:
        await create_event(api, body)
    except ApiError as err:
        log.warning("could not write Event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], err)

