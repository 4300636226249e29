"""The kopf handlers of one controller, registered on a registry of their own (several controllers can
then run in one process: tests, leader election).

Watched, never written: VirtualMachines, VirtualMachineInstances (on.event and indices only; kopf's
changing handlers would put annotations and finalizers on them), Deployments of kbmcs, Namespaces (only
with --vm-namespace-selector). Reconciled: VirtualMachineBMCs (create/update/resume, finalizer, timer).
From start-up to shutdown, the other kbmc mode's leftovers are removed (vmbmc.controller.leftovers).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from vmbmc import naming as n
from vmbmc.controller import autocreate, kube, leftovers, reconcile, shared
from vmbmc.controller.state import State
from vmbmc.k8s import config
from vmbmc.k8s.client import ApiError

log = logging.getLogger(__name__)
BMC = (n.GROUP, n.VERSION, n.PLURAL)
VM = ("kubevirt.io", "v1", "virtualmachines")
VMI = ("kubevirt.io", "v1", "virtualmachineinstances")
EVENT_RETRY_DELAYS = (0.5, 2.0, 5.0)  # on.event handlers are not retried by kopf: retry here


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _first(store: Any) -> dict[str, Any] | None:
    for item in store or ():
        return dict(item)
    return None


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """kopf's progress and diff-base in annotations (the status schema prunes anything
    else), our finalizer name, no kopf peering (it would pause operators of equal priority)."""
    prefix = "vmbmc.kubevirt.io"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix)
    settings.persistence.finalizer = n.FINALIZER
    settings.peering.standalone = True
    settings.peering.mandatory = False
    # Resources are known at start-up (the CRD is installed first); watching CRDs would need more RBAC.
    settings.scanning.disabled = True
    # Our own Events are written directly (deterministic names); kopf posts only its warnings and errors.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


async def _with_retries(state: State, what: str, fn: Callable[[], Awaitable[None]]) -> None:
    for attempt, delay in enumerate((*EVENT_RETRY_DELAYS, None)):
        try:
            await fn()
            return
        except ApiError as err:
            state.metrics.errors.labels(what).inc()
            if delay is None or (not err.retryable and err.code != 409):
                log.error("%s failed: %s", what, err)
                return
            log.warning("%s failed (attempt %d), retrying: %s", what, attempt + 1, err)
            await asyncio.sleep(delay)


async def connection_info(cfg: config.SingleConfig) -> kopf.ConnectionInfo:
    """kopf's login from the controller's own configuration (vmbmc.k8s.config), its credential fetched
    afresh: kopf logs in again after a 401, so a rotated token or a re-run exec plugin is picked up."""
    login = await config.login(cfg)
    return kopf.ConnectionInfo(**dataclasses.asdict(login), scheme="Bearer" if login.token else None)


# --- kopf's start, stop and login --------------------------------------------------------------------
async def startup(state: State, settings: kopf.OperatorSettings, **_: Any) -> None:
    configure_settings(settings)
    # the other kbmc mode's objects go, now (a switch made while the controller was down) and at
    # every resync interval (vmbmc.controller.leftovers)
    state.janitor.append(asyncio.get_running_loop().create_task(leftovers.keep_clean(state)))


async def cleanup(state: State, **_: Any) -> None:
    for task in state.janitor:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    state.janitor.clear()


async def login(state: State, **_: Any) -> kopf.ConnectionInfo:
    return await connection_info(state.api.cfg)


# --- indices: the latest of every object, by key; kopf passes each to handlers under its id ------------
# (coroutines: kopf runs a plain function in its thread pool, a hop per event and index)
async def index_bmcs_by_vm(body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {n.vm_ref(body): plain(body)}


async def index_bmc_vm_annotation(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): (body.metadata.annotations or {}).get(n.ANNOTATION_VM, "")}


async def index_by_name(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
    """VMs and VMIs by (namespace, name)."""
    return {(namespace, name): plain(body)}


async def index_namespace_labels(body: kopf.Body, name: str, **_: Any) -> dict[Any, Any]:
    """Only with --vm-namespace-selector: each namespace's labels."""
    return {name: dict(body.metadata.labels or {})}


# --- VMs, VMIs and namespaces: auto-create and the recorder -------------------------------------------
async def namespace_event(
    state: State,
    event: Mapping[str, Any],
    name: str,
    namespaces: kopf.Index,
    vms: kopf.Index,
    bmcs_by_vm: kopf.Index,
    bmc_vm_annotation: kopf.Index,
    **_: Any,
) -> None:
    """A namespace's labels changed (--vm-namespace-selector): its VMs are looked at again."""
    labels = _first(namespaces.get(name)) if event.get("type") != "DELETED" else None
    old = state.namespace_labels.get(name)
    state.namespace_labels[name] = labels or {}
    if old == labels:
        return
    for ns, vm_name in [k for k in vms if k[0] == name]:
        await _sync(state, ns, vm_name, _first(vms.get((ns, vm_name))), bmcs_by_vm, bmc_vm_annotation, labels)


async def vm_event(
    state: State,
    event: Mapping[str, Any],
    body: kopf.Body,
    namespace: str,
    name: str,
    bmcs_by_vm: kopf.Index,
    bmc_vm_annotation: kopf.Index,
    vmis: kopf.Index,
    **kwargs: Any,
) -> None:
    vm = None if event.get("type") == "DELETED" else plain(body)
    ns_labels = None
    if state.options.vm_namespace_selector:
        ns_labels = _first(kwargs["namespaces"].get(namespace))
    await _sync(state, namespace, name, vm, bmcs_by_vm, bmc_vm_annotation, ns_labels)
    vmi = _first(vmis.get((namespace, name)))
    await _observe_all(state, bmcs_by_vm, (namespace, name), vm, vmi)
    for bmc in bmcs_by_vm.get((namespace, name), ()) if vm is not None else ():
        await _with_retries(state, "rights", lambda b=dict(bmc): reconcile.follow_vm_disks(state, b, vm))


async def vmi_event(
    state: State,
    event: Mapping[str, Any],
    body: kopf.Body,
    namespace: str,
    name: str,
    bmcs_by_vm: kopf.Index,
    vms: kopf.Index,
    **_: Any,
) -> None:
    vmi = None if event.get("type") == "DELETED" else plain(body)
    vm = _first(vms.get((namespace, name)))
    await _observe_all(state, bmcs_by_vm, (namespace, name), vm, vmi)


async def _sync(
    state: State,
    ns: str,
    name: str,
    vm: dict[str, Any] | None,
    bmcs_by_vm: kopf.Index,
    annotations: kopf.Index,
    ns_labels: Mapping[str, str] | None,
) -> None:
    """Auto-create: the VM's BMC made, kept or removed."""
    candidates = [dict(b) for b in bmcs_by_vm.get((ns, name), ())]

    def owner_of(bmc_name: str) -> str | None:
        found = annotations.get((state.options.namespace, bmc_name))
        return None if found is None else str(_first_value(found))

    await _with_retries(
        state,
        "vm",
        lambda: autocreate.sync_vm(state, ns, name, vm, ns_labels, candidates, owner_of),
    )


async def _observe_all(
    state: State,
    bmcs_by_vm: kopf.Index,
    vm_key: tuple[str, str],
    vm: dict[str, Any] | None,
    vmi: dict[str, Any] | None,
) -> None:
    """Every BMC of the VM observes the change; each knows the others (their requests count too)."""
    bmcs = [dict(b) for b in bmcs_by_vm.get(vm_key, ())]
    peers = [_key(b) for b in bmcs]
    for bmc in bmcs:
        await state.recorder.observe(bmc, vm, vmi, peers)


# --- BMCs ---------------------------------------------------------------------------------------------
async def bmc_changed(state: State, body: kopf.Body, vms: kopf.Index, **_: Any) -> None:
    """Created, changed, or found at start-up: reconcile its children and status."""
    if body.metadata.get("deletionTimestamp"):
        return None
    try:
        await reconcile.reconcile(state, plain(body), _first(vms.get(n.vm_ref(body))))
    except Exception:
        state.metrics.reconciles.labels("error").inc()
        state.metrics.errors.labels("reconcile").inc()
        raise
    state.metrics.reconciles.labels("success").inc()
    return None


async def bmc_deleted(state: State, namespace: str, name: str, **_: Any) -> None:
    await reconcile.cleanup(state, namespace, name)
    return None


async def bmc_event(
    state: State,
    event: Mapping[str, Any],
    body: kopf.Body,
    namespace: str,
    name: str,
    vms: kopf.Index,
    vmis: kopf.Index,
    bmcs_by_vm: kopf.Index,
    **_: Any,
) -> None:
    """Every version of a BMC: the recorder observes it (the kbmc's new requests), metrics count it."""
    key = (namespace, name)
    autocreate.seen(state, body)
    if event.get("type") == "DELETED":
        state.history_ids.pop(key, None)
        state.recorder.forget(namespace, name)
        state.metrics.bmcs.set(len(state.history_ids))
        return
    bmc = plain(body)
    ids = {str(h.get("id")) for h in (bmc.get("status") or {}).get("powerHistory") or []}
    seen = state.history_ids.get(key)
    if seen is not None and ids - seen:
        state.metrics.transitions.inc(len(ids - seen))
    state.history_ids[key] = ids
    state.metrics.bmcs.set(len(state.history_ids))
    vm_key = n.vm_ref(bmc)
    peers = [_key(b) for b in bmcs_by_vm.get(vm_key, ())]
    await state.recorder.observe(bmc, _first(vms.get(vm_key)), _first(vmis.get(vm_key)), peers)
    if state.shared and _ready_outdated(state, bmc):
        # the shared kbmc began (or stopped) serving it, or its pod's readiness changed: fold it in
        await _with_retries(state, "ready", lambda: reconcile.update_ready(state, namespace, name))


async def resync(state: State, body: kopf.Body, namespace: str, name: str, vms: kopf.Index, **_: Any) -> None:
    """The periodic half of 'VM gone → its auto-created BMC goes' (a missed DELETED event)."""
    if namespace != state.options.namespace or body.metadata.get("deletionTimestamp"):
        return None
    vm_ns, vm_name = n.vm_ref(body)
    if (vm_ns, vm_name) in vms:
        return None
    if await kube.get(state.api, "VirtualMachine", vm_ns, vm_name) is None:
        log.info("resync: VM %s/%s is gone; deleting its BMC %s/%s", vm_ns, vm_name, namespace, name)
        await kube.delete(state.api, n.KIND, namespace, name)
    return None


async def pod_check(state: State, namespace: str, name: str, **_: Any) -> None:
    """A pod that cannot start (ErrImagePull, CrashLoopBackOff) changes no Deployment field; look
    at it again while the BMC waits for its kbmc, so the Ready condition says why."""
    await _with_retries(state, "ready", lambda: reconcile.update_ready(state, namespace, name))
    return None


# --- kbmc Deployments: readiness, and re-creating a deleted one ---------------------------------------
async def deployment_event(
    state: State, event: Mapping[str, Any], body: kopf.Body, namespace: str, **_: Any
) -> None:
    """A BMC's own kbmc Deployment (dedicated mode): its readiness is the BMC's; a deleted one is made
    again."""
    owner = next((o for o in body.metadata.get("ownerReferences") or [] if o.get("kind") == n.KIND), None)
    if owner is None or state.shared:  # in shared mode a BMC's own kbmc is a leftover, on its way out
        return
    bmc_name = str(owner["name"])
    if event.get("type") != "DELETED":
        await _with_retries(state, "ready", lambda: reconcile.update_ready(state, namespace, bmc_name))
        return

    async def recreate() -> None:
        bmc = await kube.get(state.api, n.KIND, namespace, bmc_name)
        if bmc is not None and not bmc["metadata"].get("deletionTimestamp"):
            await reconcile.reconcile(state, bmc)

    await _with_retries(state, "deployment", recreate)


async def shared_deployment_event(
    state: State,
    event: Mapping[str, Any],
    body: kopf.Body,
    namespace: str,
    name: str,
    bmcs_by_vm: kopf.Index,
    **_: Any,
) -> None:
    """The shared kbmc's readiness is every served BMC's; a deleted one is made again."""
    if name != shared.NAME or not state.shared:
        return
    if event.get("type") == "DELETED":  # made again if its roster lists a BMC (Roster.recheck)
        state.shared_pod_ready[namespace] = False
        state.roster(namespace).recheck()
        return
    served = {_key(b): dict(b) for store in bmcs_by_vm.values() for b in store if _key(b)[0] == namespace}
    pod_ready = reconcile.deployment_ready(plain(body))
    state.shared_pod_ready[namespace] = pod_ready
    # Only the BMCs whose Ready this readiness changes (as last seen; a BMC seen in an older version
    # is looked at again when its newer one arrives, against the readiness recorded here).
    for (_, bmc_name), bmc in sorted(served.items()):
        if reconcile.ready_outdated(state, bmc, pod_ready):
            await _with_retries(
                state, "ready", lambda b=bmc_name: reconcile.update_ready(state, namespace, b)
            )


# --- the registry -------------------------------------------------------------------------------------
def build_registry(state: State) -> kopf.OperatorRegistry:
    """Every handler above, bound to `state`, on a registry of its own. The ids are kopf's progress keys
    in the BMCs' annotations: they stay as they are."""
    reg = kopf.OperatorRegistry()
    opts = state.options
    on = kopf.on

    def bound(fn: Callable[..., Any]) -> Callable[..., Any]:
        return functools.partial(fn, state)

    on.startup(registry=reg, id="startup")(bound(startup))
    on.cleanup(registry=reg, id="cleanup")(bound(cleanup))
    on.login(registry=reg, id="login")(bound(login))

    kopf.index(*BMC, registry=reg, id="bmcs_by_vm")(index_bmcs_by_vm)
    kopf.index(*BMC, registry=reg, id="bmc_vm_annotation")(index_bmc_vm_annotation)
    kopf.index(*VM, registry=reg, id="vms")(index_by_name)
    kopf.index(*VMI, registry=reg, id="vmis")(index_by_name)
    if opts.vm_namespace_selector:
        kopf.index("v1", "namespaces", registry=reg, id="namespaces")(index_namespace_labels)
        on.event("v1", "namespaces", registry=reg, id="namespace_event")(bound(namespace_event))

    on.event(*VM, registry=reg, id="vm_event")(bound(vm_event))
    on.event(*VMI, registry=reg, id="vmi_event")(bound(vmi_event))

    changed = bound(bmc_changed)  # one callable for the three causes: kopf then calls it once per cause
    for cause in (on.resume, on.create, on.update):
        cause(*BMC, registry=reg, id="bmc_changed", backoff=2)(changed)
    on.delete(*BMC, registry=reg, id="bmc_deleted", backoff=2)(bound(bmc_deleted))
    on.event(*BMC, registry=reg, id="bmc_event")(bound(bmc_event))
    kopf.timer(
        *BMC,
        registry=reg,
        id="resync",
        interval=opts.resync_seconds,
        initial_delay=opts.resync_seconds,
        labels={"app.kubernetes.io/managed-by": n.MANAGED_BY},
    )(bound(resync))
    kopf.timer(
        *BMC,
        registry=reg,
        id="pod_check",
        interval=opts.pod_check_seconds,
        initial_delay=opts.pod_check_seconds,
        when=lambda status, **_: _waiting_for_kbmc(status),
    )(bound(pod_check))

    managed = {"app.kubernetes.io/managed-by": n.MANAGED_BY}
    kbmcs = {**managed, "app.kubernetes.io/component": "kbmc"}
    on.event("apps", "v1", "deployments", registry=reg, labels=kbmcs)(bound(deployment_event))
    shared_kbmcs = {**managed, "app.kubernetes.io/component": shared.COMPONENT}
    on.event("apps", "v1", "deployments", registry=reg, labels=shared_kbmcs)(bound(shared_deployment_event))
    return reg


def _ready_outdated(state: State, bmc: dict[str, Any]) -> bool:
    """Shared mode: whether this BMC version's `ready` disagrees with what is known of it: its
    `status.serving`, and the shared kbmc pod's readiness as its Deployment's events last said (not yet
    known: only a change of `serving` counts, as the Deployment's first event looks at every BMC)."""
    namespace = str((bmc.get("metadata") or {}).get("namespace"))
    pod_ready = state.shared_pod_ready.get(namespace)
    if pod_ready is None:
        status = bmc.get("status") or {}
        if bool(status.get("serving")) == bool(status.get("ready")):
            return False
    return reconcile.ready_outdated(state, bmc, pod_ready)


def _waiting_for_kbmc(status: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("reason") in ("KbmcNotReady", "KbmcNotServing")
        for c in status.get("conditions") or []
    )


def _key(bmc: Mapping[str, Any]) -> tuple[str, str]:
    meta = bmc.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))


def _first_value(store: Any) -> Any:
    for item in store or ():
        return item
    return None
