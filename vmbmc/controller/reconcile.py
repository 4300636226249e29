"""One BMC's reconciliation: validate it, create or patch its children, write the controller's status."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from vmbmc import naming as n
from vmbmc.controller import children as ch
from vmbmc.controller import kube, shared
from vmbmc.controller.credentials import CredentialsCheck, check_secret
from vmbmc.controller.state import State
from vmbmc.machine.inventory import disk_claims
from vmbmc.machine.media import data_volume_name as media_dv_name

log = logging.getLogger(__name__)


def refusal(state: State, info: ch.BmcInfo) -> str | None:
    """Why this BMC may not exist as it is, or None (a BMC outside the system namespace may only serve VMs
    in its own namespace: tenants keep to their namespace)."""
    if not info.vm_name:
        return "the BMC names no VirtualMachine"
    if info.namespace != state.options.namespace and info.vm_namespace != info.namespace:
        return (
            f"a BMC in namespace {info.namespace} may only point at VMs in its own namespace, "
            f"not at {info.vm_namespace}/{info.vm_name} (only BMCs in {state.options.namespace} may)"
        )
    return None


async def reconcile(state: State, bmc: dict[str, Any], cached_vm: dict[str, Any] | None = None) -> None:
    """`cached_vm`: the BMC's VM as the controller's watch has it, if it has it (else it is read)."""
    info = ch.BmcInfo.from_body(bmc)
    meta = bmc.get("metadata") or {}
    gen = meta.get("generation")
    base: dict[str, Any] = {
        "virtualMachine": n.vm_key(info.vm_namespace, info.vm_name),
        "observedGeneration": gen,
    }
    why = refusal(state, info)
    if why is not None:
        await remove_workload(state, info, keep_vm_namespace=None)
        if state.shared:
            await state.roster(info.namespace).put(info.name, None)
        await update_ready(state, info.namespace, info.name, base)
        await _event(state, bmc, f"refused.g{gen}", "Warning", "Refused", why)
        return

    vm = cached_vm or await kube.get(state.api, "VirtualMachine", info.vm_namespace, info.vm_name)
    if vm is None:
        found = kube.condition(
            "VirtualMachineFound",
            False,
            "VirtualMachineNotFound",
            f"VirtualMachine {info.vm_namespace}/{info.vm_name} does not exist",
        )
        await _event(state, bmc, f"vmnotfound.g{gen}", "Warning", "VirtualMachineNotFound", found["message"])
    else:
        found = kube.condition(
            "VirtualMachineFound",
            True,
            "VirtualMachineFound",
            f"VirtualMachine {info.vm_namespace}/{info.vm_name}",
        )

    status = bmc.get("status") or {}
    # never reconciled to the end: its children most likely do not exist yet, so each is created
    # before it is read (kube.apply's likely_new)
    new = "observedGeneration" not in status
    secret, secret_obj = await ensure_credentials(state, info, bmc, likely_new=new)
    creds = await check_credentials(state, bmc, info.namespace, secret, secret_obj)
    was_shared = bool(status.get("serving") or (status.get("endpoints") or {}).get("ipmiTargetPort"))
    targets: tuple[int, int] | None = None
    account: str | None = None
    if state.shared:  # the roster's writer makes the namespace's shared kbmc before listing it
        entry = await state.roster(info.namespace).put(
            info.name, shared.Wanted(info.ipmi, info.redfish, info.insecure_http, secret)
        )
        assert entry is not None
        targets, account = (entry.ipmi_port, entry.redfish_port), shared.NAME
    else:
        if was_shared:  # switched from shared mode: the shared kbmc lets go of it
            await state.roster(info.namespace).put(info.name, None)
        await kube.apply(state.api, ch.service_account(info))
    await kube.apply(state.api, ch.bmc_role(info, secret if state.shared else None), likely_new=new)
    await kube.apply(state.api, ch.bmc_role_binding(info, account), likely_new=new)
    await apply_vm_role(state, info, vm, likely_new=new)
    await kube.apply(state.api, ch.vm_role_binding(info, account), likely_new=new)
    if rights_may_be_elsewhere(bmc, info):
        await remove_workload(state, info, keep_vm_namespace=info.vm_namespace, deployment=False)
    await kube.apply(state.api, ch.network_policy(info, targets), likely_new=new)
    if not state.shared:
        await kube.apply(state.api, ch.deployment(info, str(state.options.kbmc_image), secret))
    # in shared mode, a BMC's own kbmc left from dedicated mode is removed by vmbmc.controller.leftovers
    svc = await kube.apply(state.api, ch.service(info, targets), likely_new=new)

    ip = str((svc.get("spec") or {}).get("clusterIP") or "")
    # the controller's fields and Ready in one write (one watch event, not two)
    await update_ready(
        state,
        info.namespace,
        info.name,
        {**base, "credentialsSecret": secret, "serviceIP": ip, "endpoints": endpoints(info, ip, targets)},
        [found, creds.condition],
        # `serving` is the shared kbmc's; with none serving this BMC, none is left to clear it
        remove=() if state.shared else ("serving",),
    )
    if creds.missing:  # nothing watches Secrets: look again until it is there
        raise kopf.TemporaryError(creds.condition["message"], delay=10)


async def apply_vm_role(
    state: State, info: ch.BmcInfo, vm: dict[str, Any] | None, *, likely_new: bool = False
) -> None:
    """The kbmc's Role in the VM's namespace, naming the PVCs and DataVolumes the VM's disks read now."""
    await kube.apply(state.api, ch.vm_role(info, vm), likely_new=likely_new)
    state.disk_claims[(info.namespace, info.name)] = disk_claims(vm) if vm is not None else ((), ())


async def follow_vm_disks(state: State, bmc: dict[str, Any], vm: dict[str, Any]) -> None:
    """A VM changed: when its disks now name other PVCs or DataVolumes than the BMC's kbmc Role grants
    (by name), write the Role again. Nothing for a BMC not reconciled yet in this process (its reconcile
    writes the Role) or refused (it has no Role)."""
    info = ch.BmcInfo.from_body(bmc)
    granted = state.disk_claims.get((info.namespace, info.name))
    if granted is None or granted == disk_claims(vm) or refusal(state, info) is not None:
        return
    await apply_vm_role(state, info, vm)


async def check_credentials(
    state: State, bmc: dict[str, Any], namespace: str, secret: str, current: dict[str, Any] | None = None
) -> CredentialsCheck:
    """The `Credentials` condition of the Secret the kbmc mounts (`current`: as just written, else read),
    and its Warning Event if any."""
    if current is None:
        current = await kube.get(state.api, "Secret", namespace, secret)
    check = check_secret(namespace, secret, current)
    if check.warning is not None:
        key, reason, message = check.warning
        generation = (bmc.get("metadata") or {}).get("generation")
        await _event(state, bmc, f"{key}.g{generation}", "Warning", reason, message)
    return check


def endpoints(info: ch.BmcInfo, ip: str, targets: tuple[int, int] | None = None) -> dict[str, Any]:
    """status.endpoints; a front end that is off (or no address yet) gets null, which removes its key.
    In shared mode the BMC's own ports in the shared pod too (`targets`)."""
    out: dict[str, Any] = {"ipmi": None, "redfish": None, "ipmiTargetPort": None, "redfishTargetPort": None}
    if targets is not None:
        out["ipmiTargetPort"] = targets[0] if info.ipmi else None
        out["redfishTargetPort"] = targets[1] if info.redfish else None
    if not ip or ip == "None":
        return out
    if info.ipmi:
        out["ipmi"] = f"{ip}:{ch.SERVICE_IPMI_PORT}"
    if info.redfish:
        # the Service's Redfish port is 443 either way: plain HTTP there needs the port spelled out
        out["redfish"] = f"http://{ip}:{ch.SERVICE_REDFISH_PORT}/redfish/v1" if info.insecure_http else (
            f"https://{ip}/redfish/v1")
    return out


def deployment_ready(deployment: dict[str, Any] | None) -> bool:
    """The kbmc pod of the Deployment's current spec passes its readiness probe (an old pod's readiness,
    before the Deployment controller has seen a new spec, says nothing about the new one)."""
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    return (
        int(status.get("observedGeneration") or 0) >= generation
        and int(status.get("updatedReplicas") or 0) >= 1
        and int(status.get("readyReplicas") or 0) >= 1
    )


def readiness(
    state: State, bmc: dict[str, Any], pod_ready: bool, stuck: str | None = None, *, shared: bool = False
) -> tuple[bool, dict[str, Any]]:
    """`ready` and the Ready condition: a promise that a client can use the BMC now. True only when the BMC
    is not refused, its credentials Secret, Service IP and endpoints are in its status, and the kbmc pod
    of the current Deployment is ready; `stuck` is why its pod does not start, as its kubelet says.
    `shared`: the pod is the namespace's shared kbmc, which must also say it serves this BMC."""
    why = refusal(state, ch.BmcInfo.from_body(bmc))
    if why is not None:
        return False, kube.condition("Ready", False, "Refused", why)
    status = bmc.get("status") or {}
    missing = [
        field
        for field, present in (
            ("credentialsSecret", bool(status.get("credentialsSecret"))),
            ("serviceIP", bool(status.get("serviceIP"))),
            ("endpoints", any((status.get("endpoints") or {}).values())),
        )
        if not present
    ]
    if missing:
        return False, kube.condition("Ready", False, "Reconciling", f"waiting for {', '.join(missing)}")
    if not pod_ready:
        creds = next((c for c in status.get("conditions") or [] if c.get("type") == "Credentials"), {})
        if creds.get("reason") in ("SecretNotFound", "SecretIncomplete"):
            stuck = creds.get("message")  # the pod waits for its Secret volume: say which Secret, and how
        waiting = "waiting for the kbmc pod to become ready" + (f": {stuck}" if stuck else "")
        return False, kube.condition("Ready", False, "KbmcNotReady", waiting)
    if shared:
        # The shared pod's Ready says nothing about a BMC added after it started: the kbmc's own word.
        if not status.get("serving"):
            waiting = "waiting for the shared kbmc to serve this BMC (status.serving)"
            return False, kube.condition("Ready", False, "KbmcNotServing", waiting)
        return True, kube.condition("Ready", True, "KbmcServing", "the shared kbmc serves this BMC")
    return True, kube.condition("Ready", True, "KbmcReady", "the kbmc pod is ready")


async def update_ready(
    state: State,
    namespace: str,
    name: str,
    fields: Mapping[str, Any] | None = None,
    conditions: list[dict[str, Any]] = (),  # type: ignore[assignment]
    *,
    remove: tuple[str, ...] = (),
) -> None:
    """The one writer of `ready` and the Ready condition (see `readiness`), decided from the very BMC
    version it patches, with the reconcile's own status `fields`, `conditions` and removals (`remove`)
    written in the same patch when given (and counted as written). Serialised per BMC, with the
    Deployment read inside the lock: the last writer has read the newest Deployment, so a slow reconcile
    cannot overwrite a newer answer with an older one."""
    lock = state.ready_locks.setdefault((namespace, name), asyncio.Lock())
    async with lock:
        workload = shared.NAME if state.shared else n.kbmc_name(name)
        deployment = await kube.get(state.api, "Deployment", namespace, workload)
        pod_ready = deployment_ready(deployment)
        stuck = None if pod_ready or deployment is None else await pod_problem(state, deployment)

        def compute(bmc: dict[str, Any]) -> kube.StatusFields:
            view = _with_status(bmc, fields or {}, conditions, remove)
            ok, cond = readiness(state, view, pod_ready, stuck, shared=state.shared)
            return {**(fields or {}), "ready": ok}, [*conditions, cond]

        await kube.update_status(state.api, namespace, name, compute, remove=remove)


def _with_status(
    bmc: dict[str, Any], fields: Mapping[str, Any], conditions: list[dict[str, Any]], remove: tuple[str, ...]
) -> dict[str, Any]:
    """The BMC as it will read once `fields` and `conditions` are written and `remove` is gone (what
    `readiness` looks at: a map field's null values are removed keys)."""
    if not fields and not conditions and not remove:
        return bmc
    status = {k: v for k, v in (bmc.get("status") or {}).items() if k not in remove}
    for key, value in fields.items():
        status[key] = (
            {k: v for k, v in value.items() if v is not None} if isinstance(value, Mapping) else value
        )
    by_type = {str(c.get("type")): c for c in status.get("conditions") or []}
    by_type.update({str(c["type"]): c for c in conditions})
    status["conditions"] = list(by_type.values())
    return {**bmc, "status": status}


def ready_outdated(state: State, bmc: dict[str, Any], pod_ready: bool | None) -> bool:
    """Whether `update_ready` would change this BMC version, its kbmc pod being ready as `pod_ready` says
    (None: not known, either way may be). False too while the pod's readiness does not matter (refused,
    or not reconciled to the end: its reconcile decides then). Lets the watch handlers skip the reads of
    `update_ready` for a BMC whose `ready` already says what they know: the recorder's and the kbmc's
    status writes come by often."""

    def fields(ready: bool) -> Callable[[dict[str, Any]], kube.StatusFields]:
        def compute(b: dict[str, Any]) -> kube.StatusFields:
            ok, cond = readiness(state, b, ready, shared=state.shared)
            return {"ready": ok}, [cond]

        return compute

    if fields(True)(bmc) == fields(False)(bmc):
        return False
    return any(
        kube.status_patch(bmc, fields(r)) is not None
        for r in ((True, False) if pod_ready is None else (pod_ready,))
    )


async def pod_problem(state: State, deployment: dict[str, Any]) -> str | None:
    """Why the Deployment's pod is not running, as its kubelet reports it (ErrImagePull,
    ImagePullBackOff, CrashLoopBackOff, …): a container's waiting reason and message, or None."""
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    meta = deployment["metadata"]
    for pod in await kube.list_items(state.api, "Pod", meta["namespace"], selector):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                detail = f": {waiting['message']}" if waiting.get("message") else ""
                where = f"pod {pod['metadata']['name']} container {cs.get('name')}"
                return f"{where} is {waiting['reason']}{detail}"
    return None


async def ensure_credentials(
    state: State, info: ch.BmcInfo, bmc: dict[str, Any], *, likely_new: bool = False
) -> tuple[str, dict[str, Any] | None]:
    """The name of the Secret the kbmc mounts: the user's (authSecretRef), a copy of the seed's inline
    credentials, or a generated one (kept once made: a new password on every reconcile would lock out
    every client); and the Secret as written when this wrote it (None: the user's, not read here)."""
    spec = bmc.get("spec") or {}
    ref = spec.get("authSecretRef") or {}
    if ref.get("name"):
        return str(ref["name"]), None
    if spec.get("username") and spec.get("password"):
        written = await kube.apply(
            state.api, ch.credentials_secret(info, str(spec["username"]), str(spec["password"]))
        )
        await _event(
            state,
            bmc,
            "inlinecredentials",
            "Warning",
            "InlineCredentials",
            "spec.username/spec.password are stored in the BMC itself; they were copied into Secret "
            f"{n.credentials_name(info.name)}. Use spec.authSecretRef to keep credentials out of the BMC.",
        )
        return n.credentials_name(info.name), written
    secret = await kube.apply(
        state.api,
        ch.credentials_secret(info, "admin", ch.generate_password()),
        create_only=True,
        likely_new=likely_new,
    )
    data = secret.get("data") or {}
    if not data.get("username") or not data.get("password"):  # emptied by hand: make it usable again
        secret = await kube.apply(state.api, ch.credentials_secret(info, "admin", ch.generate_password()))
    return n.credentials_name(info.name), secret


def vm_namespace_selector(namespace: str, name: str) -> str:
    return f"{n.LABEL_BMC}={n.label_value(name)},{n.LABEL_BMC_NAMESPACE}={n.label_value(namespace)}"


def rights_may_be_elsewhere(bmc: dict[str, Any], info: ch.BmcInfo) -> bool:
    """Whether an earlier version of this BMC may have left a VM-namespace Role/RoleBinding outside
    `info.vm_namespace`. Finding them takes two cluster-wide lists, which a burst of 1,000 new BMCs
    would pay 1,000 times for nothing. `status.virtualMachine` is the VM the last completed reconcile
    granted rights for; a BMC that never completed one and was never changed (generation 1) has had
    no other VM."""
    status = bmc.get("status") or {}
    granted = status.get("virtualMachine")
    if not granted:
        return int((bmc.get("metadata") or {}).get("generation") or 1) > 1
    return str(granted).partition("/")[0] != info.vm_namespace


async def remove_workload(
    state: State, info: ch.BmcInfo, *, keep_vm_namespace: str | None, deployment: bool = True
) -> None:
    """Delete the VM-namespace Role/RoleBinding everywhere but `keep_vm_namespace` (a BMC re-pointed at a
    VM elsewhere, refused, or deleted), and the kbmc Deployment when `deployment`."""
    selector = vm_namespace_selector(info.namespace, info.name)
    for kind in ("RoleBinding", "Role"):
        for obj in await kube.list_items(state.api, kind, None, selector):
            meta = obj["metadata"]
            if meta.get("namespace") != keep_vm_namespace and meta.get("name") == n.vm_role_name(info.name):
                if kind == "Role":  # the kbmc's virtual CD (its DataVolume) goes with its rights there
                    await kube.delete(state.api, "DataVolume", meta["namespace"], media_dv_name(info.name))
                await kube.delete(state.api, kind, meta["namespace"], meta["name"])
    if deployment:
        await kube.delete(state.api, "Deployment", info.namespace, n.kbmc_name(info.name))


async def cleanup(state: State, namespace: str, name: str) -> None:
    """The finalizer's work: what the garbage collector cannot do (the VM namespace's Role/RoleBinding)."""
    info = ch.BmcInfo(namespace=namespace, name=name, uid="", vm_namespace="", vm_name="")
    await remove_workload(state, info, keep_vm_namespace=None, deployment=False)
    await state.roster(namespace).put(name, None)  # a shared kbmc stops serving it
    state.recorder.forget(namespace, name)
    state.ready_locks.pop((namespace, name), None)
    state.disk_claims.pop((namespace, name), None)


async def _event(state: State, bmc: dict[str, Any], key: str, type_: str, reason: str, message: str) -> None:
    await kube.emit_event(
        state.api, bmc, key=key, type_=type_, reason=reason, message=message, instance=state.options.identity
    )
