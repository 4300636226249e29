"""The demo's topology for power history tests: the emulator (RBAC, the project's CRDs), a LocalPodRunner
running each kbmc pod as a real `vmbmc kbmc` process under its own token, and the real controller (as its
ServiceAccount, deploy/rbac.yaml) that can be stopped and started again; read as an operator reads it
(kubectl) and driven with real clients (ipmitool)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pod_cluster import pod_cluster

from vmbmc.controller import ControllerOptions, ControllerThread
from vmbmc_devcluster.demo.podrunner import LocalPodRunner
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until

SYSTEM, TENANT = "virtualmachinebmc-system", "tenant"
BMC_LABEL = "virtualmachinebmc.kubevirt.io/bmc"


class Topology:
    """The emulator, the pod runner and a controller that can be restarted."""

    def __init__(self, emu: EmulatorThread, runner: LocalPodRunner, controller_kc: Path, tmp: Path) -> None:
        self.emu, self.runner, self.tmp = emu, runner, tmp
        self.kubeconfig = str(emu.kubeconfig)
        self.options = ControllerOptions(
            kubeconfig=str(controller_kc),
            health_port=0,
            health_address="127.0.0.1",
            resync_seconds=2.0,
            redfish_default=True,
            identity="history-e2e",
        )
        self.controller: ControllerThread | None = ControllerThread(self.options).start()
        reg = emu.emulator.registry
        self.store = emu.emulator.store
        self.rt = {
            "vm": reg.get("kubevirt.io", "v1", "virtualmachines"),
            "bmc": reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs"),
            "pod": reg.get("", "v1", "pods"),
            "secret": reg.get("", "v1", "secrets"),
            "ns": reg.get("", "v1", "namespaces"),
        }

    def stop_controller(self) -> None:
        assert self.controller is not None
        self.controller.stop()
        assert self.controller.error is None, self.controller.error
        self.controller = None

    def start_controller(self) -> None:
        self.controller = ControllerThread(self.options).start()

    # --- reading, with kubectl as an operator does -------------------------------------------------
    def kubectl(self, *args: str) -> str:
        out = subprocess.run(
            [KUBECTL, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def bmc(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "vmbmc", name, "-n", SYSTEM, "-o", "json")))

    def history(self, bmc: str) -> list[dict[str, Any]]:
        return list((self.bmc(bmc).get("status") or {}).get("powerHistory") or [])

    def events(self, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
        """Every Event about the object, found by involvedObject as `kubectl describe` finds them."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        listed = json.loads(
            self.kubectl("get", "events", "-n", namespace, "--field-selector", selector, "-o", "json")
        )
        return list(listed["items"])

    def vm_events(self, vm: str) -> list[dict[str, Any]]:
        return self.events("VirtualMachine", TENANT, vm)

    def bmc_events(self, bmc: str) -> list[dict[str, Any]]:
        return self.events("VirtualMachineBMC", SYSTEM, bmc)

    # --- the cluster ----------------------------------------------------------------------------------
    def create_vm(self, index: int) -> str:
        vm = sample_vm(index, TENANT)
        self.emu.call(self.store.create, self.rt["vm"], vm, TENANT)
        return str(vm["metadata"]["name"])

    def credentials(self, bmc_name: str) -> tuple[str, str, str, str]:
        """(pod address, user, password, redfish URL) of a Ready BMC, once its pod has an address."""

        def ready() -> tuple[str, str, str, str] | None:
            bmc = self.emu.call(self.store.try_get, self.rt["bmc"], SYSTEM, bmc_name)
            status = (bmc or {}).get("status") or {}
            if not status.get("ready"):
                return None
            pods, _ = self.emu.call(
                self.store.list, self.rt["pod"], SYSTEM, label_selector=f"{BMC_LABEL}={bmc_name}"
            )
            ip = next((p["status"].get("podIP") for p in pods if (p.get("status") or {}).get("podIP")), None)
            secret = self.emu.call(self.store.try_get, self.rt["secret"], SYSTEM, status["credentialsSecret"])
            if not ip or secret is None:
                return None
            data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            return ip, data["username"], data["password"], f"https://{ip}:8443"

        found: tuple[str, str, str, str] = wait_until(ready, timeout=40, what=f"BMC {bmc_name} Ready")
        return found

    def ipmitool(self, bmc_name: str, *args: str) -> str:
        ip, user, password, _ = self.credentials(bmc_name)
        cmd = ["ipmitool", "-I", "lanplus", "-H", ip, "-p", "10623", "-U", user, "-P", password, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def vm_printable(self, vm: str) -> str:
        obj = self.emu.call(self.store.try_get, self.rt["vm"], TENANT, vm) or {}
        return str((obj.get("status") or {}).get("printableStatus") or "")

    def wait_entries(self, bmc: str, reason: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """The BMC's history entries whose Event (`<bmc>.<id>`) has `reason`, once there are `count`."""

        def found() -> list[dict[str, Any]] | None:
            reasons = {e["metadata"]["name"]: e["reason"] for e in self.bmc_events(bmc)}
            hits = [h for h in self.history(bmc) if reasons.get(f"{bmc}.{h['id']}") == reason]
            return hits if len(hits) >= count else None

        hits: list[dict[str, Any]] = wait_until(found, timeout=timeout, what=f"{count} x {reason} on {bmc}")
        return hits


@contextmanager
def topology(tmp: Path, first_address: int) -> Iterator[Topology]:
    """The topology, its pods on 127.10.0.<first_address> and up; at the end, no request was refused."""
    with pod_cluster(tmp, first_address, (SYSTEM, TENANT)) as (emu, runner, controller_kc):
        topo = Topology(emu, runner, controller_kc, tmp)
        try:
            yield topo
        finally:
            if topo.controller is not None:
                topo.stop_controller()
            assert emu.call(lambda: list(emu.emulator.security.denials)) == []  # no rule missing anywhere
