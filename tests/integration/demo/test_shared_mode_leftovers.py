"""Switching `--kbmc-mode` leaves exactly the objects the new mode needs, in every namespace, and nothing
of the old mode: no per-BMC kbmc Deployment or ServiceAccount in shared mode, no shared kbmc (Deployment,
ServiceAccount, Role, RoleBinding, roster ConfigMap) in dedicated mode, and in shared mode none in a
namespace whose BMCs are all gone. Each BMC keeps its Service's ClusterIP, its credentials Secret, its
boot override and its power history.

Four controller runs against the emulator (RBAC enforced, the controller as its ServiceAccount with
deploy/rbac.yaml, kbmc pods as real processes): dedicated → shared → dedicated → shared, with BMCs in the
system namespace (auto-created) and in two tenant namespaces. One tenant's BMC is deleted while the
controller is stopped (its finalizer runs in the next mode's controller), the other's while shared mode
runs. The objects are read with kubectl, by the controller's label, across all namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))

from pod_cluster import pod_cluster

from vmbmc.controller import ControllerOptions, ControllerThread
from vmbmc_devcluster.demo.cluster import ready_endpoint
from vmbmc_devcluster.demo.endpoints import BmcEndpoint
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until

SYSTEM = "virtualmachinebmc-system"
SHARED = "vmbmc-kbmc-shared"
KINDS = "deployments,serviceaccounts,roles,rolebindings,configmaps,services,secrets,networkpolicies"
MANAGED = "app.kubernetes.io/managed-by=vmbmc-controller"
BMC_GROUP = "virtualmachinebmcs.virtualmachine.kubevirt.io"
# (BMC namespace, BMC, VM namespace, VM)
SYSTEM_BMCS = [(SYSTEM, f"default-demo-vm-{i}", "default", f"demo-vm-{i}") for i in (1, 2)]
TENANT_A = ("tenant-a", "bmc-a", "tenant-a", "demo-vm-3")
TENANT_B = ("tenant-b", "bmc-b", "tenant-b", "demo-vm-4")
Bmc = tuple[str, str, str, str]
Obj = tuple[str, str, str]  # kind, namespace, name
pytestmark = pytest.mark.timeout(600)


def own(bmcs: Iterable[Bmc]) -> set[Obj]:
    """What every BMC has in both modes."""
    out: set[Obj] = set()
    for ns, b, vm_ns, _ in bmcs:
        out |= {
            ("Service", ns, f"{b}-kbmc"),
            ("NetworkPolicy", ns, f"{b}-kbmc"),
            ("Secret", ns, f"{b}-credentials"),
            ("Role", ns, f"vmbmc-{b}-bmc"),
            ("RoleBinding", ns, f"vmbmc-{b}-bmc"),
            ("Role", vm_ns, f"vmbmc-{b}-vm"),
            ("RoleBinding", vm_ns, f"vmbmc-{b}-vm"),
        }
    return out


def dedicated_objects(bmcs: list[Bmc]) -> set[Obj]:
    pods = {(kind, ns, f"{b}-kbmc") for ns, b, _, _ in bmcs for kind in ("Deployment", "ServiceAccount")}
    return own(bmcs) | pods


def shared_objects(bmcs: list[Bmc]) -> set[Obj]:
    kinds = ("Deployment", "ServiceAccount", "Role", "RoleBinding", "ConfigMap")
    return own(bmcs) | {(kind, ns, SHARED) for ns in {b[0] for b in bmcs} for kind in kinds}


def ipmitool(e: BmcEndpoint, *args: str) -> str:
    assert e.ipmi_host is not None and e.ipmi_port is not None
    cmd = ["ipmitool", "-I", "lanplus", "-H", e.ipmi_host, "-p", str(e.ipmi_port), "-U", e.username]
    out = subprocess.run([*cmd, "-P", e.password, *args], capture_output=True, text=True, timeout=30)
    return out.stdout


def test_switching_modes_leaves_exactly_what_the_mode_needs(tmp_path: Path) -> None:
    namespaces = (SYSTEM, TENANT_A[0], TENANT_B[0])
    with pod_cluster(tmp_path, 300, namespaces) as (emu, _runner, controller_kc):
        kubeconfig = emu.kubeconfig
        store, reg = emu.emulator.store, emu.emulator.registry
        bmc_rt = reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs")

        def create(group: str, plural: str, obj: dict[str, Any], ns: str | None) -> None:
            emu.call(store.create, reg.get(group, "v1", plural), obj, ns)

        for i in (1, 2):
            create("kubevirt.io", "virtualmachines", sample_vm(i), "default")
        for ns, bmc, _, vm in (TENANT_A, TENANT_B):
            tenant_vm = sample_vm(int(vm[-1]), ns)
            # a tenant's own BMC only: no auto-created one in the system namespace
            tenant_vm["metadata"]["labels"]["virtualmachinebmc.kubevirt.io/enabled"] = "false"
            create("kubevirt.io", "virtualmachines", tenant_vm, ns)
            spec = {"virtualMachineRef": {"name": vm}}
            body = {"apiVersion": "virtualmachine.kubevirt.io/v1", "kind": "VirtualMachineBMC"}
            create(
                "virtualmachine.kubevirt.io",
                "virtualmachinebmcs",
                {**body, "metadata": {"name": bmc, "namespace": ns}, "spec": spec},
                ns,
            )

        def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
            cmd = [KUBECTL, "--kubeconfig", str(kubeconfig), *args]
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

        def items() -> list[dict[str, Any]]:
            out = kubectl("get", KINDS, "-A", "-l", MANAGED, "-o", "json")
            assert out.returncode == 0, out.stderr
            return list(json.loads(out.stdout)["items"])

        def objects() -> set[Obj]:
            return {(i["kind"], i["metadata"]["namespace"], i["metadata"]["name"]) for i in items()}

        def settle(want: set[Obj], what: str) -> None:
            """Exactly `want`, the old mode's objects and pods gone (bounded: the sweep runs at start-up)."""
            try:
                wait_until(lambda: objects() == want and pods_match(want), timeout=90, what=what)
            except AssertionError as err:
                got = objects()
                left = f"missing {sorted(want - got)}, left over {sorted(got - want)}"
                raise AssertionError(f"{what}: {left}") from err

        def pods_match(want: set[Obj]) -> bool:
            """A running kbmc pod for exactly the Deployments in `want` (a leftover pod holds a token)."""
            out = kubectl("get", "pods", "-A", "-l", "app.kubernetes.io/name=vmbmc", "-o", "json")
            assert out.returncode == 0, out.stderr
            owners = set()
            for pod in json.loads(out.stdout)["items"]:
                labels = pod["metadata"].get("labels") or {}
                name = SHARED if labels.get("app.kubernetes.io/component") == "kbmc-shared" else None
                name = name or f"{labels.get('virtualmachinebmc.kubevirt.io/bmc')}-kbmc"
                owners.add(("Deployment", pod["metadata"]["namespace"], name))
            return owners == {o for o in want if o[0] == "Deployment"}

        def status(bmc: Bmc) -> dict[str, Any]:
            found = emu.call(store.try_get, bmc_rt, bmc[0], bmc[1]) or {}
            return dict(found.get("status") or {})

        def moved(bmcs: list[Bmc], shared: bool) -> bool:
            """Every BMC Ready in the mode's way: the shared kbmc serves it on its own ports, or not."""
            for bmc in bmcs:
                st = status(bmc)
                marks = (bool(st.get("serving")), bool((st.get("endpoints") or {}).get("ipmiTargetPort")))
                if not st.get("ready") or marks != (shared, shared):
                    return False
            return True

        def cluster_ips() -> dict[str, str]:
            return {
                f"{i['metadata']['namespace']}/{i['metadata']['name']}": i["spec"]["clusterIP"]
                for i in items()
                if i["kind"] == "Service"
            }

        def passwords() -> dict[str, str]:
            return {
                f"{i['metadata']['namespace']}/{i['metadata']['name']}": i["data"]["password"]
                for i in items()
                if i["kind"] == "Secret"
            }

        def bound_to(want: dict[str, str]) -> None:
            """Each BMC's RoleBindings name the account that serves it, and only the shared kbmc's Role
            reads the BMC's Secret (the dedicated kbmc mounts it)."""
            for i in items():
                meta = i["metadata"]
                bmc = (meta.get("labels") or {}).get("virtualmachinebmc.kubevirt.io/bmc")
                if i["kind"] == "RoleBinding" and meta["name"] != SHARED:
                    assert [s["name"] for s in i["subjects"]] == [want[bmc]], meta["name"]
                if i["kind"] == "Role" and meta["name"].endswith("-bmc"):
                    reads = any("secrets" in r["resources"] for r in i["rules"])
                    assert reads == (want[bmc] == SHARED), meta["name"]

        def options(mode: str) -> ControllerOptions:
            return ControllerOptions(
                kubeconfig=str(controller_kc),
                health_port=0,
                health_address="127.0.0.1",
                identity=f"leftovers-{mode}",
                kbmc_mode=mode,
            )

        first = SYSTEM_BMCS[0]
        every = [*SYSTEM_BMCS, TENANT_A, TENANT_B]
        with ControllerThread(options("dedicated")):
            wait_until(lambda: moved(every, False), timeout=90, what="every BMC ready in dedicated mode")
            e = wait_until(lambda: emu.call(ready_endpoint, emu, (first[2], first[3])), 30, "endpoint")
            assert "Set Boot Device to pxe" in ipmitool(e, "chassis", "bootdev", "pxe", "options=persistent")
            assert "Up/On" in ipmitool(e, "power", "on")
            wait_until(
                lambda: (
                    any(h.get("to") == "On" for h in status(first).get("powerHistory") or [])
                    and (status(first).get("bootOverride") or {}).get("target") == "Pxe"
                ),
                timeout=30,
                what="history and boot override recorded",
            )
            settle(dedicated_objects(every), "dedicated mode's objects")
            ips, secrets = cluster_ips(), passwords()
            assert len(ips) == len(secrets) == len(every) and all(ips.values())
            bound_to({b[1]: f"{b[1]}-kbmc" for b in every})
        history = [h["id"] for h in status(first)["powerHistory"]]

        def kept(bmcs: list[Bmc]) -> None:
            """ClusterIPs, Secrets, boot override and history as they were."""
            names = {f"{b[0]}/{b[1]}" for b in bmcs}
            assert cluster_ips() == {k: v for k, v in ips.items() if k.removesuffix("-kbmc") in names}
            same = {k: v for k, v in secrets.items() if k.removesuffix("-credentials") in names}
            assert passwords() == same
            assert [h["id"] for h in status(first)["powerHistory"]][: len(history)] == history
            assert (status(first).get("bootOverride") or {}).get("target") == "Pxe"

        with ControllerThread(options("shared")):
            wait_until(lambda: moved(every, True), timeout=90, what="every BMC served by a shared kbmc")
            settle(shared_objects(every), "shared mode's objects, no BMC's own kbmc or ServiceAccount")
            kept(every)
            bound_to({b[1]: SHARED for b in every})

        # stopped: tenant-b's last BMC is deleted (its finalizer waits for the next controller)
        gone = kubectl("-n", TENANT_B[0], "delete", BMC_GROUP, TENANT_B[1], "--wait=false")
        assert gone.returncode == 0, gone.stderr
        left = [*SYSTEM_BMCS, TENANT_A]
        with ControllerThread(options("dedicated")):
            wait_until(lambda: moved(left, False), timeout=90, what="every BMC back in dedicated mode")
            settle(dedicated_objects(left), "dedicated mode's objects, no shared kbmc anywhere")
            assert emu.call(store.try_get, bmc_rt, TENANT_B[0], TENANT_B[1]) is None
            assert all("serving" not in status(b) for b in left)
            kept(left)
            bound_to({b[1]: f"{b[1]}-kbmc" for b in left})

        with ControllerThread(options("shared")):
            wait_until(lambda: moved(left, True), timeout=90, what="every BMC shared again")
            settle(shared_objects(left), "shared mode's objects again")

            # a shared kbmc deleted by hand while its roster lists BMCs is made again
            def uid() -> str | None:
                out = kubectl("-n", SYSTEM, "get", "deployment", SHARED, "-o", "jsonpath={.metadata.uid}")
                return out.stdout if out.returncode == 0 else None

            old_uid = uid()
            gone = kubectl("-n", SYSTEM, "delete", "deployment", SHARED, "--wait=false")
            assert old_uid and gone.returncode == 0, gone.stderr
            wait_until(lambda: uid() not in (None, old_uid), timeout=30, what="the shared kbmc made again")
            wait_until(lambda: moved(left, True), timeout=90, what="served by the new shared kbmc")
            settle(shared_objects(left), "shared mode's objects after the shared kbmc was deleted")
            # tenant-a's last BMC goes while shared mode runs: its namespace's shared kbmc goes with it
            gone = kubectl("-n", TENANT_A[0], "delete", BMC_GROUP, TENANT_A[1], "--wait=false")
            assert gone.returncode == 0, gone.stderr
            settle(shared_objects(SYSTEM_BMCS), "no shared kbmc where no BMC is left")
            kept(SYSTEM_BMCS)
            e = wait_until(lambda: emu.call(ready_endpoint, emu, (first[2], first[3])), 30, "endpoint")
            wait_until(lambda: "is on" in ipmitool(e, "power", "status"), timeout=30, what="served")
            assert "Force PXE" in ipmitool(e, "chassis", "bootparam", "get", "5")
        # neither the controller nor a kbmc met a missing rule (deploy/rbac.yaml, the Roles)
        assert emu.call(lambda: list(emu.emulator.security.denials)) == []
