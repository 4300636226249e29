"""VM and VMI dicts shaped as KubeVirt serves them, for the state machine's unit tests."""

from __future__ import annotations

import copy
from typing import Any


def vm(
    *,
    ready: bool | None = None,
    printable: str = "Stopped",
    run_strategy: str = "Halted",
    changes: list[dict[str, Any]] | None = None,
    deleting: bool = False,
    interfaces: list[dict[str, Any]] | None = None,
    disks: list[dict[str, Any]] | None = None,
    firmware: dict[str, Any] | None = None,
    domain_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    domain: dict[str, Any] = {
        "devices": {
            "interfaces": [{"name": "default", "masquerade": {}}] if interfaces is None else interfaces,
            "disks": (
                [{"name": "rootdisk", "disk": {"bus": "virtio"}}, {"name": "cd", "cdrom": {"bus": "sata"}}]
                if disks is None
                else disks
            ),
        }
    }
    if firmware is not None:
        domain["firmware"] = firmware
    domain.update(domain_extra or {})
    status: dict[str, Any] = {"printableStatus": printable}
    if ready is not None:
        status["ready"] = ready
    if changes:
        status["stateChangeRequests"] = changes
    meta: dict[str, Any] = {"name": "vm1", "namespace": "ns", "uid": "vm-uid-1", "resourceVersion": "42"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": meta,
        "spec": {"runStrategy": run_strategy, "template": {"spec": {"domain": domain}}},
        "status": status,
    }


def vmi(
    phase: str = "Running", *, uid: str = "vmi-uid-1", paused: bool = False, deleting: bool = False
) -> dict[str, Any]:
    conds = [{"type": "Ready", "status": "True" if phase == "Running" else "False"}]
    if paused:
        conds.append({"type": "Paused", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"})
    meta: dict[str, Any] = {"name": "vm1", "namespace": "ns", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": conds}}


def clone(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)
