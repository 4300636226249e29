"""The demo as a cluster runs it: the controller auto-creates a VirtualMachineBMC per sample VM and a
kbmc Deployment for each; the pod runner runs every kbmc pod as a local `vmbmc kbmc` process on its
own loopback address (127.10.0.0/16, with the container ports). The endpoints file then names those
addresses."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from vmbmc.naming import SYSTEM_NAMESPACE
from vmbmc_devcluster.demo.endpoints import BmcEndpoint
from vmbmc_devcluster.emulator.harness import EmulatorThread

log = logging.getLogger("vmbmc.demo")

IPMI_PORT, REDFISH_PORT = 10623, 8443  # the container ports (the Service maps 623 and 443 to them)
BMC_LABEL = "virtualmachinebmc.kubevirt.io/bmc"
COMPONENT_LABEL, SHARED_COMPONENT = "app.kubernetes.io/component", "kbmc-shared"  # the shared kbmc pod
CONTROLLER_SELECTOR = "app.kubernetes.io/name=vmbmc,app.kubernetes.io/component=controller"
STALL_S = 120.0  # no further BMC Ready for this long: the demo gives up
POLL_INTERVAL_S, POLL_TIMEOUT_S = 0.5, 30.0


class StartupFailed(Exception):
    """The demo could not bring its BMCs up: the message names the cause and what to do."""


def ready_endpoint(emu: EmulatorThread, vm: tuple[str, str]) -> BmcEndpoint | None:
    """The endpoint of the VM's BMC once it is Ready and its pod has an address, else None."""
    return ready_endpoints(emu, [vm])[0]


def ready_endpoints(emu: EmulatorThread, vms: list[tuple[str, str]]) -> list[BmcEndpoint | None]:
    """Each VM's BMC endpoint (as `ready_endpoint`), read in one pass over the stored objects (read-only,
    never copied): the demo polls this on the emulator's loop, which serves every pod meanwhile."""
    store, reg = emu.emulator.store, emu.emulator.registry
    by_vm: dict[str, dict] = {}
    bmc_rt = reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs")
    for b in store.iter_raw(bmc_rt, SYSTEM_NAMESPACE):
        vm = (b.get("metadata", {}).get("annotations") or {}).get("virtualmachinebmc.kubevirt.io/vm")
        if vm:
            by_vm[vm] = b
    pods: dict[tuple[str, str], dict] = {}  # (label, value) -> a pod not being deleted
    for p in store.iter_raw(reg.get("", "v1", "pods"), SYSTEM_NAMESPACE):
        if p["metadata"].get("deletionTimestamp"):
            continue
        labels = p["metadata"].get("labels") or {}
        for key in (BMC_LABEL, COMPONENT_LABEL):
            if key in labels:
                pods.setdefault((key, labels[key]), p)
    secrets_rt = reg.get("", "v1", "secrets")
    return [_endpoint(f"{ns}/{name}", by_vm.get(f"{ns}/{name}"), pods, store, secrets_rt) for ns, name in vms]


def _endpoint(
    vm: str, bmc: dict | None, pods: dict[tuple[str, str], dict], store: Any, secrets_rt: Any
) -> BmcEndpoint | None:
    status: dict[str, Any] = (bmc or {}).get("status") or {}
    if bmc is None or not status.get("ready") or not status.get("credentialsSecret"):
        return None
    bmc_name = bmc["metadata"]["name"]
    ends = status.get("endpoints") or {}
    # Shared mode: the shared pod, on this BMC's own ports (status.endpoints); else the BMC's own pod.
    shared = bool(ends.get("ipmiTargetPort") or ends.get("redfishTargetPort"))
    pod = pods.get((COMPONENT_LABEL, SHARED_COMPONENT) if shared else (BMC_LABEL, bmc_name))
    ip = ((pod or {}).get("status") or {}).get("podIP")
    if not ip:
        return None
    secret = store.try_get(secrets_rt, SYSTEM_NAMESPACE, status["credentialsSecret"], copy=False)
    if secret is None:
        return None
    data = secret.get("data") or {}
    redfish = (bmc.get("spec") or {}).get("redfish") or {}
    scheme = "http" if redfish.get("insecureHTTP") else "https"
    ipmi_port = int(ends.get("ipmiTargetPort") or IPMI_PORT) if shared else IPMI_PORT
    redfish_port = int(ends.get("redfishTargetPort") or REDFISH_PORT) if shared else REDFISH_PORT
    return BmcEndpoint(
        vm=vm,
        bmc=f"{SYSTEM_NAMESPACE}/{bmc_name}",
        ipmi_host=ip,
        ipmi_port=ipmi_port,
        redfish=f"{scheme}://{ip}:{redfish_port}/redfish/v1" if redfish.get("enabled") else None,
        username=base64.b64decode(data.get("username", "")).decode(),
        password=base64.b64decode(data.get("password", "")).decode(),
    )


def controller_failure(emu: EmulatorThread) -> str | None:
    """Why the controller's pod does not run (its container exited, or its image cannot be pulled), or
    None: a wrong flag, env or rule in deploy/ shows here at once, not as a timeout."""
    store, reg = emu.emulator.store, emu.emulator.registry
    pods, _ = store.list(reg.get("", "v1", "pods"), SYSTEM_NAMESPACE, label_selector=CONTROLLER_SELECTOR)
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            if cs.get("restartCount") or waiting in ("ErrImagePull", "ImagePullBackOff", "RunContainerError"):
                why = f"waiting: {waiting}" if waiting else f"it exited {cs['restartCount']} time(s)"
                return f"the controller pod {pod['metadata']['name']} does not run ({why})"
    return None


def not_ready_reason(emu: EmulatorThread, vm: str) -> str:
    """Why the BMC of `vm` ("ns/name") is not Ready, as its Ready condition says (the controller's word)."""
    store, reg = emu.emulator.store, emu.emulator.registry
    bmc_rt = reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs")
    for bmc in store.iter_raw(bmc_rt, SYSTEM_NAMESPACE):
        if (bmc["metadata"].get("annotations") or {}).get("virtualmachinebmc.kubevirt.io/vm") == vm:
            conditions = (bmc.get("status") or {}).get("conditions") or []
            ready = next((c for c in conditions if c.get("type") == "Ready"), {})
            return str(ready.get("message") or "the controller has not reconciled its BMC yet")
    return "the controller has made no BMC for it yet"


def _poll(
    emu: EmulatorThread, vms: list[tuple[str, str]]
) -> tuple[str | None, list[BmcEndpoint | None], str]:
    """What the wait looks at, in one call on the emulator's loop: a failing controller pod, the ready
    endpoints, and why the first VM without one is still waiting."""
    found = ready_endpoints(emu, vms)
    first = next((f"{ns}/{n}" for (ns, n), e in zip(vms, found, strict=True) if e is None), None)
    return controller_failure(emu), found, "" if first is None else f"{first}: {not_ready_reason(emu, first)}"


async def wait_for_bmcs(
    emu: EmulatorThread, vms: list[tuple[str, str]], stall: float | None = None
) -> list[BmcEndpoint]:
    """Every VM's endpoint, once every BMC is Ready. Gives up (StartupFailed) when the controller's pod
    fails, or when no further BMC has become Ready for `stall` seconds: a large demo on a busy machine
    takes minutes, and a slow answer of the emulator is no failure by itself."""
    stall = STALL_S if stall is None else stall
    loop = asyncio.get_running_loop()
    ready, progress_at = 0, loop.time()
    missing, why = [f"{ns}/{n}" for ns, n in vms], ""
    while True:
        try:
            failure, found, why = await asyncio.to_thread(emu.call, _poll, emu, vms, timeout=POLL_TIMEOUT_S)
        except TimeoutError:
            log.info("the emulator is busy; polling the BMCs again")
        else:
            if failure is not None:
                raise StartupFailed(failure)
            if all(found):
                return [e for e in found if e is not None]
            now_ready = sum(1 for e in found if e)
            if now_ready > ready:
                ready, progress_at = now_ready, loop.time()
                missing = [f"{ns}/{n}" for (ns, n), e in zip(vms, found, strict=True) if e is None]
        if loop.time() - progress_at > stall:
            waiting = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise StartupFailed(
                f"{ready} of {len(vms)} BMCs Ready and none more for {stall:.0f} s (waiting for {waiting}"
                + (f"; {why}" if why else "")
                + "): a busy machine starts fewer --vms, or --kbmc-mode shared, sooner"
            )
        await asyncio.sleep(POLL_INTERVAL_S)
