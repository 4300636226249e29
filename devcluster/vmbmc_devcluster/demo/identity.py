"""Identities for a controller or kbmc run in-process (tests, benchmarks), as a cluster would give them:
the controller's ServiceAccount bound to the rules `deploy/rbac.yaml` ships, a kbmc's ServiceAccount and
Roles as the controller writes them, each with a kubeconfig holding that account's token (issue 12).
`vmbmc demo` needs none of this: it installs deploy/ and runs every process from its pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SYSTEM = "virtualmachinebmc-system"
SERVICE_ACCOUNT = "vmbmc-controller"
PLURALS = {
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
}


def install_controller_identity(emu: Any, rbac: Path, kubeconfig: Path) -> None:
    """Create the controller's ServiceAccount and RBAC objects; write its kubeconfig to `kubeconfig`."""
    store, reg = emu.emulator.store, emu.emulator.registry
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": SYSTEM},
    }
    emu.call(store.create, reg.get("", "v1", "serviceaccounts"), sa, SYSTEM)
    for doc in yaml.safe_load_all(rbac.read_text()):
        if not doc:
            continue
        group, _, version = doc["apiVersion"].rpartition("/")
        rt = reg.get(group, version, PLURALS[doc["kind"]])
        namespace = None if doc["kind"].startswith("Cluster") else doc["metadata"].get("namespace", SYSTEM)
        emu.call(store.create, rt, doc, namespace)
    emu.write_service_account_kubeconfig(kubeconfig, SYSTEM, SERVICE_ACCOUNT)


def install_kbmc_identity(emu: Any, bmc: Any, kubeconfig: Path) -> None:
    """Give a kbmc run without the controller the identity the controller would give it: its
    ServiceAccount, the two Roles and RoleBindings (limited by resourceNames, built by
    vmbmc.controller.children, so exactly what the controller writes), and a kubeconfig with that
    account's token.

    `bmc` is a vmbmc.controller.children.BmcInfo; one without a uid (a VM served with `--vm`) gets
    objects without owner references."""
    from vmbmc import naming
    from vmbmc.controller import children

    store, reg = emu.emulator.store, emu.emulator.registry
    vms = reg.get("kubevirt.io", "v1", "virtualmachines")
    vm = emu.call(store.try_get, vms, bmc.vm_namespace, bmc.vm_name) if vms is not None else None
    for build in (
        children.service_account,
        children.bmc_role,
        children.bmc_role_binding,
        lambda b: children.vm_role(b, vm),  # its disks' PVCs and DataVolumes too
        children.vm_role_binding,
    ):
        obj = build(bmc)
        if not bmc.uid:
            obj["metadata"].pop("ownerReferences", None)
        group, _, version = obj["apiVersion"].rpartition("/")
        plural = "serviceaccounts" if obj["kind"] == "ServiceAccount" else PLURALS[obj["kind"]]
        emu.call(store.create, reg.get(group, version, plural), obj, obj["metadata"]["namespace"])
    emu.write_service_account_kubeconfig(kubeconfig, bmc.namespace, naming.kbmc_name(bmc.name))
