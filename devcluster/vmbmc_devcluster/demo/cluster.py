"""The demo as a cluster runs it: the controller auto-creates a VirtualMachineBMC per sample VM and a
kbmc Deployment for each; the pod runner runs every kbmc pod as a local `vmbmc kbmc` process on its
own loopback address (127.10.0.0/16, with the container ports). The endpoints file then names those
addresses."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

from vmbmc.controller.naming import SYSTEM_NAMESPACE
from vmbmc_devcluster.demo.endpoints import BmcEndpoint
from vmbmc_devcluster.emulator.harness import EmulatorThread

log = logging.getLogger("vmbmc.demo")

IPMI_PORT, REDFISH_PORT = 10623, 8443  # the container ports (the Service maps 623 and 443 to them)
BMC_LABEL = "virtualmachinebmc.kubevirt.io/bmc"
COMPONENT_LABEL, SHARED_COMPONENT = "app.kubernetes.io/component", "kbmc-shared"  # the shared kbmc pod
CONTROLLER_SELECTOR = "app.kubernetes.io/name=vmbmc,app.kubernetes.io/component=controller"


def ready_endpoint(emu: EmulatorThread, vm: tuple[str, str]) -> BmcEndpoint | None:
    """The endpoint of the VM's BMC once it is Ready and its pod has an address, else None."""
    store, reg = emu.emulator.store, emu.emulator.registry
    bmcs, _ = store.list(reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs"), SYSTEM_NAMESPACE)
    ns, name = vm
    bmc = next(
        (
            b
            for b in bmcs
            if (b.get("metadata", {}).get("annotations") or {}).get("virtualmachinebmc.kubevirt.io/vm")
            == f"{ns}/{name}"
        ),
        None,
    )
    status: dict[str, Any] = (bmc or {}).get("status") or {}
    if bmc is None or not status.get("ready") or not status.get("credentialsSecret"):
        return None
    bmc_name = bmc["metadata"]["name"]
    pods, _ = store.list(reg.get("", "v1", "pods"), SYSTEM_NAMESPACE)
    ends = status.get("endpoints") or {}
    # Shared mode: the shared pod, on this BMC's own ports (status.endpoints); else the BMC's own pod.
    shared = bool(ends.get("ipmiTargetPort") or ends.get("redfishTargetPort"))
    want = (COMPONENT_LABEL, SHARED_COMPONENT) if shared else (BMC_LABEL, bmc_name)
    pod = next(
        (
            p
            for p in pods
            if (p["metadata"].get("labels") or {}).get(want[0]) == want[1]
            and not p["metadata"].get("deletionTimestamp")
        ),
        None,
    )
    ip = ((pod or {}).get("status") or {}).get("podIP")
    if not ip:
        return None
    secret = store.try_get(reg.get("", "v1", "secrets"), SYSTEM_NAMESPACE, status["credentialsSecret"])
    if secret is None:
        return None
    data = secret.get("data") or {}
    redfish = (bmc.get("spec") or {}).get("redfish") or {}
    scheme = "http" if redfish.get("insecureHTTP") else "https"
    ipmi_port = int(ends.get("ipmiTargetPort") or IPMI_PORT) if shared else IPMI_PORT
    redfish_port = int(ends.get("redfishTargetPort") or REDFISH_PORT) if shared else REDFISH_PORT
    return BmcEndpoint(
        vm=f"{ns}/{name}",
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


async def wait_for_bmcs(
    emu: EmulatorThread, vms: list[tuple[str, str]], timeout: float = 60.0
) -> list[BmcEndpoint]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        failure = await asyncio.to_thread(emu.call, controller_failure, emu)
        if failure is not None:
            raise RuntimeError(failure)
        found = [await asyncio.to_thread(emu.call, ready_endpoint, emu, vm) for vm in vms]
        if all(found):
            return [e for e in found if e is not None]
        if loop.time() > deadline:
            missing = [f"{ns}/{n}" for (ns, n), e in zip(vms, found, strict=True) if e is None]
            raise TimeoutError(f"no Ready BMC after {timeout:.0f} s for: {', '.join(missing)}")
        await asyncio.sleep(0.2)
