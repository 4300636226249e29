"""Auto-created BMCs: one per VM in the system namespace, deleted by the controller when the VM goes
(no ownerReference to the VM, which may live in another namespace).

The VM is only read (kopf `on.event` and indices): no finalizer, annotation or label is ever written to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from vmbmc import naming as n
from vmbmc.controller import kube
from vmbmc.controller.state import State
from vmbmc.k8s.client import ApiError

log = logging.getLogger(__name__)

# How long a BMC we created is taken as existing before the controller's watch shows it (normally well
# under a second; a VM's events meanwhile would create it again, to a 409 and a read)
CREATED_MEMORY = 30.0


def wanted(state: State, vm: Mapping[str, Any] | None, namespace_labels: Mapping[str, str] | None) -> bool:
    """Whether this VM should have an auto-created BMC (it exists, is not opted out, its namespace is
    selected). Auto-create being off only stops new BMCs: see `should_delete`."""
    if vm is None or (vm.get("metadata") or {}).get("deletionTimestamp"):
        return False
    labels = (vm.get("metadata") or {}).get("labels") or {}
    if labels.get(n.LABEL_ENABLED) == "false":
        return False
    if state.options.vm_namespace_selector:
        from vmbmc.selectors import parse

        if namespace_labels is None or not parse(state.options.vm_namespace_selector)(namespace_labels):
            return False
    return True


def new_bmc(state: State, name: str, vm_namespace: str, vm_name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"virtualMachineRef": {"namespace": vm_namespace, "name": vm_name}}
    if state.options.redfish_default:
        spec["redfish"] = {"enabled": True}
    if state.options.redfish_insecure_http_default:
        spec.setdefault("redfish", {})["insecureHTTP"] = True
    return {
        "apiVersion": f"{n.GROUP}/{n.VERSION}",
        "kind": n.KIND,
        "metadata": {
            "name": name,
            "namespace": state.options.namespace,
            "labels": n.bmc_labels(name, vm_namespace, vm_name),
            "annotations": {n.ANNOTATION_VM: n.vm_key(vm_namespace, vm_name)},
        },
        "spec": spec,
    }


def _annotation(bmc: Mapping[str, Any]) -> str | None:
    return ((bmc.get("metadata") or {}).get("annotations") or {}).get(n.ANNOTATION_VM)


async def sync_vm(
    state: State,
    vm_namespace: str,
    vm_name: str,
    vm: Mapping[str, Any] | None,
    namespace_labels: Mapping[str, str] | None,
    candidates: Iterable[Mapping[str, Any]],
    owner_of: Callable[[str], str | None],
) -> None:
    """Make the VM's auto-created BMC exist or not.

    `candidates`: the BMCs whose spec names this VM; `owner_of(name)`: the `ns/name` annotation of the
    system namespace's BMC called `name` (None: no such BMC), both from the controller's indices. The
    indices may lag a create of ours: it is remembered until the watch delivers the BMC (at most
    CREATED_MEMORY seconds), and a 409 covers the rest."""
    system = [b for b in candidates if (b.get("metadata") or {}).get("namespace") == state.options.namespace]
    existing = n.find_existing(system, vm_namespace, vm_name)
    if not wanted(state, vm, namespace_labels):
        if existing is not None:
            log.info(
                "deleting auto-created BMC %s: VM %s/%s is gone or opted out", existing, vm_namespace, vm_name
            )
            await kube.delete(state.api, n.KIND, state.options.namespace, existing)
        return
    key = (vm_namespace, vm_name)
    if existing is not None:
        state.created_bmcs.pop(key, None)
        return
    if not state.options.auto_create:
        return
    made = state.created_bmcs.pop(key, None)
    if made is not None and time.monotonic() - made[1] < CREATED_MEMORY:
        state.created_bmcs[key] = made
        return  # created by us a moment ago; the index has not seen it yet (a create would answer 409)
    plain = n.plain_bmc_name(vm_namespace, vm_name)
    holder = owner_of(plain)
    name = n.bmc_name_for(vm_namespace, vm_name, {plain: holder} if holder is not None else {})
    vm_key = n.vm_key(vm_namespace, vm_name)
    for candidate in dict.fromkeys([name, n.hashed_bmc_name(vm_namespace, vm_name)]):
        body = new_bmc(state, candidate, vm_namespace, vm_name)
        if await state.api.create(kube.path(n.KIND, state.options.namespace), body) is not None:
            log.info("created BMC %s/%s for VM %s", state.options.namespace, candidate, vm_key)
            state.created_bmcs[key] = (candidate, time.monotonic())
            return
        other = await kube.get(state.api, n.KIND, state.options.namespace, candidate)
        if other is not None and _annotation(other) == vm_key:
            # ours already: the index had not seen it yet, or our create reached the server and its
            # answer was lost (create() sent it again); remembered like any create of ours
            state.created_bmcs[key] = (candidate, time.monotonic())
            return
    raise ApiError(409, "Conflict", f"no free BMC name for VM {vm_key}")


def seen(state: State, bmc: Mapping[str, Any]) -> None:
    """The controller's watch has delivered this BMC: its VM's create need not be remembered any longer."""
    made = state.created_bmcs.get(n.vm_ref(bmc))
    if made is not None and made[0] == (bmc.get("metadata") or {}).get("name"):
        del state.created_bmcs[n.vm_ref(bmc)]
