"""One BMC's reconciliation: validate it, create or patch its children, write the controller's status."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from vmbmc.controller import children as ch
from vmbmc.controller import kube, shared
from vmbmc.controller import naming as n
from vmbmc.controller.credentials import CredentialsCheck, check_secret
from vmbmc.controller.state import State
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


async def reconcile(state: State, bmc: dict[str, Any]) -> None:
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
        await kube.patch_status(state.api, info.namespace, info.name, base)
        await update_ready(state, info.namespace, info.name)
        await _event(state, bmc, f"refused.g{gen}", "Warning", "Refused", why)
        return

    vm = await kube.get(state.api, "VirtualMachine", info.vm_namespace, info.vm_name)
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

    secret = await ensure_credentials(state, info, bmc)
    creds = await check_credentials(state, bmc, info.namespace, secret)
    status = bmc.get("status") or {}
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
    await kube.apply(state.api, ch.bmc_role(info, secret if state.shared else None))
    await kube.apply(state.api, ch.bmc_role_binding(info, account))
    await kube.apply(state.api, ch.vm_role(info))
    await kube.apply(state.api, ch.vm_role_binding(info, account))
    await remove_workload(state, info, keep_vm_namespace=info.vm_namespace, deployment=False)
    await kube.apply(state.api, ch.network_policy(info, targets))
    if not state.shared:
        await kube.apply(state.api, ch.deployment(info, str(state.options.kbmc_image), secret))
    # in shared mode, a BMC's own kbmc left from dedicated mode is removed by vmbmc.controller.leftovers
    svc = await kube.apply(state.api, ch.service(info, targets))

    ip = str((svc.get("spec") or {}).get("clusterIP") or "")
    await kube.patch_status(
        state.api,
        info.namespace,
        info.name,
        {**base, "credentialsSecret": secret, "serviceIP": ip, "endpoints": endpoints(info, ip, targets)},
        [found, creds.condition],
        # `serving` is the shared kbmc's; with none serving this BMC, none is left to clear it
        remove=() if state.shared else ("serving",),
    )
    await update_ready(state, info.namespace, info.name)
    if creds.missing:  # nothing watches Secrets: look again until it is there
        raise kopf.TemporaryError(creds.condition["message"], delay=10)


async def check_credentials(
    state: State, bmc: dict[str, Any], namespace: str, secret: str
) -> CredentialsCheck:
    """The `Credentials` condition of the Secret the kbmc mounts, and its Warning Event if any."""
    check = check_secret(namespace, secret, await kube.get(state.api, "Secret", namespace, secret))
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
        out["ipmi"] = f"{ip}:623"
    if info.redfish:
        out["redfish"] = f"{'http' if info.insecure_http else 'https'}://{ip}/redfish/v1"
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


async def update_ready(state: State, namespace: str, name: str) -> None:
    """The one writer of `ready` and the Ready condition (see `readiness`), decided from the very BMC
    version it patches. Serialised per BMC, with the Deployment read inside the lock: the last writer has
    read the newest Deployment, so a slow reconcile cannot overwrite a newer answer with an older one."""
    lock = state.ready_locks.setdefault((namespace, name), asyncio.Lock())
    async with lock:
        workload = shared.NAME if state.shared else n.kbmc_name(name)
        deployment = await kube.get(state.api, "Deployment", namespace, workload)
        pod_ready = deployment_ready(deployment)
        stuck = None if pod_ready or deployment is None else await pod_problem(state, deployment)

        def compute(bmc: dict[str, Any]) -> kube.StatusFields:
            ok, cond = readiness(state, bmc, pod_ready, stuck, shared=state.shared)
            return {"ready": ok}, [cond]

        await kube.update_status(state.api, namespace, name, compute)


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


async def ensure_credentials(state: State, info: ch.BmcInfo, bmc: dict[str, Any]) -> str:
    """The name of the Secret the kbmc mounts: the user's (authSecretRef), a copy of the seed's inline
    credentials, or a generated one (kept once made: a new password on every reconcile would lock out
    every client)."""
    spec = bmc.get("spec") or {}
    ref = spec.get("authSecretRef") or {}
    if ref.get("name"):
        return str(ref["name"])
    if spec.get("username") and spec.get("password"):
        await kube.apply(state.api, ch.credentials_secret(info, str(spec["username"]), str(spec["password"])))
        await _event(
            state,
            bmc,
            "inlinecredentials",
            "Warning",
            "InlineCredentials",
            "spec.username/spec.password are stored in the BMC itself; they were copied into Secret "
            f"{n.credentials_name(info.name)}. Use spec.authSecretRef to keep credentials out of the BMC.",
        )
        return n.credentials_name(info.name)
    secret = await kube.apply(
        state.api, ch.credentials_secret(info, "admin", ch.generate_password()), create_only=True
    )
    data = secret.get("data") or {}
    if not data.get("username") or not data.get("password"):  # emptied by hand: make it usable again
        await kube.apply(state.api, ch.credentials_secret(info, "admin", ch.generate_password()))
    return n.credentials_name(info.name)


def vm_namespace_selector(namespace: str, name: str) -> str:
    return f"{n.LABEL_BMC}={n.label_value(name)},{n.LABEL_BMC_NAMESPACE}={n.label_value(namespace)}"


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


async def _event(state: State, bmc: dict[str, Any], key: str, type_: str, reason: str, message: str) -> None:
    await kube.emit_event(
        state.api, bmc, key=key, type_=type_, reason=reason, message=message, instance=state.options.identity
    )
