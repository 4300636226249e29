"""Helpers for the state machine's integration tests: VM bodies, a synchronous view of the emulator."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmbmc_devcluster.emulator.harness import EmulatorThread

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def crd_files() -> list[Path]:
    """The project's CRDs (crds/virtualmachinebmc.yaml: spec and the written-out status schema, pruning
    included)."""
    files = [p for p in sorted((ROOT / "crds").glob("*.yaml")) if "CustomResourceDefinition" in p.read_text()]
    assert files, "crds/ holds no CustomResourceDefinition"
    return files


_names = itertools.count(1)


def unique(prefix: str = "vm") -> str:
    return f"{prefix}{next(_names)}"


def rt(emu: EmulatorThread, group: str, plural: str) -> Any:
    version = "v1"
    found = emu.emulator.registry.get(group, version, plural)
    assert found is not None, (group, plural)
    return found


def vm_body(name: str, *, interfaces: bool = True, cdrom: bool = True, run_strategy: str = "Halted") -> dict:
    disks: list[dict[str, Any]] = [{"name": "rootdisk", "disk": {"bus": "virtio"}, "bootOrder": 1}]
    if cdrom:
        disks.append({"name": "installer", "cdrom": {"bus": "sata"}})
    domain: dict[str, Any] = {
        "devices": {
            "disks": disks,
            "interfaces": [{"name": "default", "masquerade": {}}] if interfaces else [],
        },
        "cpu": {"cores": 2},
        "memory": {"guest": "1Gi"},
        "resources": {"requests": {"memory": "1Gi"}},
    }
    if not interfaces:
        domain["devices"]["autoattachPodInterface"] = False
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "runStrategy": run_strategy,
            "template": {
                "spec": {
                    "domain": domain,
                    "networks": [{"name": "default", "pod": {}}] if interfaces else [],
                    "volumes": [
                        {"name": "rootdisk", "containerDisk": {"image": "quay.io/containerdisks/fedora"}}
                    ],
                    "terminationGracePeriodSeconds": 30,
                }
            },
        },
    }


class Cluster:
    """Synchronous helpers that run on the emulator's loop."""

    def __init__(self, emu: EmulatorThread) -> None:
        self.emu = emu
        self.vms = rt(emu, "kubevirt.io", "virtualmachines")
        self.vmis = rt(emu, "kubevirt.io", "virtualmachineinstances")
        self.bmcs = rt(emu, "virtualmachine.kubevirt.io", "virtualmachinebmcs")
        self.events = rt(emu, "", "events")

    def create_vm(self, name: str, **kw: Any) -> dict:
        return self.emu.call(self.emu.emulator.store.create, self.vms, vm_body(name, **kw), "default")

    def create_bmc(self, name: str, vm: str, *, redfish: str = "") -> dict:
        """BMC `default/<name>` of VM `default/<vm>`; `redfish` "https" or "http" (insecureHTTP) turns
        Redfish on."""
        spec: dict[str, Any] = {"virtualMachineRef": {"namespace": "default", "name": vm}}
        if redfish:
            spec["redfish"] = {"enabled": True, **({"insecureHTTP": True} if redfish == "http" else {})}
        body = {
            "apiVersion": "virtualmachine.kubevirt.io/v1",
            "kind": "VirtualMachineBMC",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }
        return self.emu.call(self.emu.emulator.store.create, self.bmcs, body, "default")

    def patch_bmc_status(self, name: str, status: dict) -> None:
        """A merge patch of BMC `default/<name>`'s status, as the controller writes its fields."""
        body = json.dumps({"status": status})
        self.emu.call(
            self.emu.emulator.store.patch, self.bmcs, "default", name, "application/merge-patch+json", body,
            subresource="status",
        )

    def vm(self, name: str) -> dict | None:
        return copy.deepcopy(self.emu.call(self.emu.emulator.store.try_get, self.vms, "default", name))

    def vmi(self, name: str) -> dict | None:
        return copy.deepcopy(self.emu.call(self.emu.emulator.store.try_get, self.vmis, "default", name))

    def bmc(self, name: str) -> dict | None:
        return copy.deepcopy(self.emu.call(self.emu.emulator.store.try_get, self.bmcs, "default", name))

    def events_for(self, name: str) -> list[dict]:
        items, _ = self.emu.call(self.emu.emulator.store.list, self.events, "default")
        return [e for e in items if e["involvedObject"]["name"] == name]

    def delete_vm(self, name: str) -> None:
        self.emu.call(self.emu.emulator.store.delete, self.vms, "default", name)

    def virtctl(self, name: str, action: str, **opts: Any) -> int:
        return self.emu.call(self.emu.kubevirt.virtctl, "default", name, action, **opts)


async def wait_for(pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
