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
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from vmbmc.controller import autocreate, kube, leftovers, reconcile, shared
from vmbmc.controller import naming as n
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


def build_registry(state: State) -> kopf.OperatorRegistry:
    reg = kopf.OperatorRegistry()
    opts = state.options

    janitor: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=reg, id="startup")
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_settings(settings)
        # the other kbmc mode's objects go, now (a switch made while the controller was down) and at
        # every resync interval (vmbmc.controller.leftovers)
        janitor.append(asyncio.get_running_loop().create_task(leftovers.keep_clean(state)))

    @kopf.on.cleanup(registry=reg, id="cleanup")
    async def cleanup(**_: Any) -> None:
        for task in janitor:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        janitor.clear()

    @kopf.on.login(registry=reg, id="login")
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await connection_info(state.api.cfg)

    # --- indices: the latest of every object, by key ------------------------------------------------
    # (coroutines: kopf runs a plain function in its thread pool, a hop per event and index)
    @kopf.index(*BMC, registry=reg, id="bmcs_by_vm")
    async def bmcs_by_vm(body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {n.vm_ref(body): plain(body)}

    @kopf.index(*BMC, registry=reg, id="bmc_vm_annotation")
    async def bmc_vm_annotation(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): (body.metadata.annotations or {}).get(n.ANNOTATION_VM, "")}

    @kopf.index(*VM, registry=reg, id="vms")
    async def vms(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): plain(body)}

    @kopf.index(*VMI, registry=reg, id="vmis")
    async def vmis(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): plain(body)}

    namespace_labels: dict[str, dict[str, str]] = {}

    if opts.vm_namespace_selector:

        @kopf.index("v1", "namespaces", registry=reg, id="namespaces")
        async def namespaces(body: kopf.Body, name: str, **_: Any) -> dict[Any, Any]:
            return {name: dict(body.metadata.labels or {})}

        @kopf.on.event("v1", "namespaces", registry=reg, id="namespace_event")
        async def namespace_event(
            event: Mapping[str, Any],
            name: str,
            namespaces: kopf.Index,
            vms: kopf.Index,
            bmcs_by_vm: kopf.Index,
            bmc_vm_annotation: kopf.Index,
            **_: Any,
        ) -> None:
            labels = _first(namespaces.get(name)) if event.get("type") != "DELETED" else None
            old = namespace_labels.get(name)
            namespace_labels[name] = labels or {}
            if old == labels:
                return
            for ns, vm_name in [k for k in vms if k[0] == name]:
                await sync(ns, vm_name, _first(vms.get((ns, vm_name))), bmcs_by_vm, bmc_vm_annotation, labels)

    async def sync(
        ns: str,
        name: str,
        vm: dict[str, Any] | None,
        bmcs_by_vm: kopf.Index,
        annotations: kopf.Index,
        ns_labels: Mapping[str, str] | None,
    ) -> None:
        candidates = [dict(b) for b in bmcs_by_vm.get((ns, name), ())]

        def owner_of(bmc_name: str) -> str | None:
            found = annotations.get((opts.namespace, bmc_name))
            return None if found is None else str(_first_value(found))

        await _with_retries(
            state,
            "vm",
            lambda: autocreate.sync_vm(state, ns, name, vm, ns_labels, candidates, owner_of),
        )

    # --- VMs and VMIs: auto-create and the recorder ------------------------------------------------
    async def observe_all(
        bmcs_by_vm: kopf.Index, vm_key: tuple[str, str], vm: dict[str, Any] | None, vmi: dict[str, Any] | None
    ) -> None:
        """Every BMC of the VM observes the change; each knows the others (their requests count too)."""
        bmcs = [dict(b) for b in bmcs_by_vm.get(vm_key, ())]
        peers = [_key(b) for b in bmcs]
        for bmc in bmcs:
            await state.recorder.observe(bmc, vm, vmi, peers)

    @kopf.on.event(*VM, registry=reg, id="vm_event")
    async def vm_event(
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
        if opts.vm_namespace_selector:
            ns_labels = _first(kwargs["namespaces"].get(namespace))
        await sync(namespace, name, vm, bmcs_by_vm, bmc_vm_annotation, ns_labels)
        vmi = _first(vmis.get((namespace, name)))
        await observe_all(bmcs_by_vm, (namespace, name), vm, vmi)

    @kopf.on.event(*VMI, registry=reg, id="vmi_event")
    async def vmi_event(
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
        await observe_all(bmcs_by_vm, (namespace, name), vm, vmi)

    # --- BMCs ---------------------------------------------------------------------------------------
    @kopf.on.resume(*BMC, registry=reg, id="bmc_changed", backoff=2)
    @kopf.on.create(*BMC, registry=reg, id="bmc_changed", backoff=2)
    @kopf.on.update(*BMC, registry=reg, id="bmc_changed", backoff=2)
    async def bmc_changed(body: kopf.Body, vms: kopf.Index, **_: Any) -> None:
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

    @kopf.on.delete(*BMC, registry=reg, id="bmc_deleted", backoff=2)
    async def bmc_deleted(namespace: str, name: str, **_: Any) -> None:
        await reconcile.cleanup(state, namespace, name)
        return None

    @kopf.on.event(*BMC, registry=reg, id="bmc_event")
    async def bmc_event(
        event: Mapping[str, Any],
        body: kopf.Body,
        namespace: str,
        name: str,
        vms: kopf.Index,
        vmis: kopf.Index,
        bmcs_by_vm: kopf.Index,
        **_: Any,
    ) -> None:
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

    @kopf.timer(
        *BMC,
        registry=reg,
        id="resync",
        interval=opts.resync_seconds,
        initial_delay=opts.resync_seconds,
        labels={"app.kubernetes.io/managed-by": n.MANAGED_BY},
    )
    async def resync(body: kopf.Body, namespace: str, name: str, vms: kopf.Index, **_: Any) -> None:
        """The periodic half of 'VM gone → its auto-created BMC goes' (a missed DELETED event)."""
        if namespace != opts.namespace or body.metadata.get("deletionTimestamp"):
            return None
        vm_ns, vm_name = n.vm_ref(body)
        if (vm_ns, vm_name) in vms:
            return None
        if await kube.get(state.api, "VirtualMachine", vm_ns, vm_name) is None:
            log.info("resync: VM %s/%s is gone; deleting its BMC %s/%s", vm_ns, vm_name, namespace, name)
            await kube.delete(state.api, n.KIND, namespace, name)
        return None

    @kopf.timer(
        *BMC,
        registry=reg,
        id="pod_check",
        interval=opts.pod_check_seconds,
        initial_delay=opts.pod_check_seconds,
        when=lambda status, **_: _waiting_for_kbmc(status),
    )
    async def pod_check(namespace: str, name: str, **_: Any) -> None:
        """A pod that cannot start (ErrImagePull, CrashLoopBackOff) changes no Deployment field; look
        at it again while the BMC waits for its kbmc, so the Ready condition says why."""
        await _with_retries(state, "ready", lambda: reconcile.update_ready(state, namespace, name))
        return None

    # --- kbmc Deployments: readiness, and re-creating a deleted one ---------------------------------
    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=reg,
        labels={"app.kubernetes.io/managed-by": n.MANAGED_BY, "app.kubernetes.io/component": "kbmc"},
    )
    async def deployment_event(event: Mapping[str, Any], body: kopf.Body, namespace: str, **_: Any) -> None:
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

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=reg,
        labels={
            "app.kubernetes.io/managed-by": n.MANAGED_BY,
            "app.kubernetes.io/component": shared.COMPONENT,
        },
    )
    async def shared_deployment_event(
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
