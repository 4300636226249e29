"""The controller against the emulator: auto-created BMCs, their children, status, cleanup."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from tests.integration.controller.conftest import SYSTEM, Api, until
from vmbmc.machine.media import data_volume

BMC_LABEL = "virtualmachinebmc.kubevirt.io/bmc"
ROOT_DV = "demo-vm-1-rootdisk"  # the sample VM's root disk (its DataVolume and PVC)


def bmc_ready(api: Api, ns: str, name: str) -> Any:
    bmc = api.get("vmbmc", ns, name)
    return bmc if bmc and (bmc.get("status") or {}).get("ready") else None


def conditions(bmc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in bmc["status"].get("conditions", [])}


def test_vm_gets_a_bmc_with_every_child(api: Api, controller: Any) -> None:
    vm = api.vm("tenant-a", "web.1")
    name = "tenant-a-web-1"
    bmc = until(lambda: bmc_ready(api, SYSTEM, name), 20, "the auto-created BMC to be ready")
    labels = bmc["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "vmbmc",
        "app.kubernetes.io/managed-by": "vmbmc-controller",
        BMC_LABEL: name,
        "virtualmachinebmc.kubevirt.io/vm-namespace": "tenant-a",
        "virtualmachinebmc.kubevirt.io/vm-name": "web.1",
    }
    assert bmc["metadata"]["annotations"]["virtualmachinebmc.kubevirt.io/vm"] == "tenant-a/web.1"
    assert bmc["spec"]["virtualMachineRef"] == {"namespace": "tenant-a", "name": "web.1"}
    assert "virtualmachinebmc.kubevirt.io/cleanup" in bmc["metadata"]["finalizers"]
    assert "kopf" not in json.dumps(bmc.get("status")), "kopf keeps nothing in status"

    # status
    st = bmc["status"]
    svc = api.get("service", SYSTEM, f"{name}-kbmc")
    assert svc is not None
    ip = svc["spec"]["clusterIP"]
    assert st["serviceIP"] == ip
    assert st["endpoints"] == {"ipmi": f"{ip}:623"}
    assert st["virtualMachine"] == "tenant-a/web.1"
    assert st["credentialsSecret"] == f"{name}-credentials"
    assert st["observedGeneration"] == bmc["metadata"]["generation"]
    conds = conditions(bmc)
    assert conds["Ready"]["status"] == "True"
    assert conds["VirtualMachineFound"]["status"] == "True"

    # Service
    assert svc["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        (623, 10623, "UDP")
    ]
    assert svc["spec"]["selector"][BMC_LABEL] == name

    # ServiceAccount, Secret
    assert api.get("serviceaccount", SYSTEM, f"{name}-kbmc") is not None
    secret = api.get("secret", SYSTEM, f"{name}-credentials")
    assert secret is not None
    assert base64.b64decode(secret["data"]["username"]).decode() == "admin"
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) == 16 and password.isalnum() and password.isascii()
    assert conds["Credentials"]["status"] == "True", conds["Credentials"]

    # Deployment
    dep = api.get("deployment", SYSTEM, f"{name}-kbmc")
    assert dep is not None
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == f"{name}-kbmc"
    (c,) = pod["containers"]
    assert c["image"] == "vmbmc:dev"
    assert c["args"] == [
        "kbmc", "--bmc", f"{SYSTEM}/{name}", "--ipmi-port", "10623", "--advertised-ipmi-port", "623",
        "--redfish-port", "8443", "--health-port", "8081", "--credentials-dir", "/etc/vmbmc/credentials",
    ]  # fmt: skip
    assert {(p["containerPort"], p["protocol"]) for p in c["ports"]} == {(10623, "UDP"), (8081, "TCP")}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8081}
    assert c["env"] == [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts == {"/etc/vmbmc/credentials": "credentials", "/tmp": "tmp"}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["credentials"]["secret"]["secretName"] == f"{name}-credentials"
    assert "emptyDir" in vols["tmp"]
    for obj in (dep, svc, secret):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == bmc["metadata"]["uid"] and ref["kind"] == "VirtualMachineBMC"
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "kbmc"

    # RBAC: exactly the kbmc's two Roles, each rule limited by resourceNames except `create` on events
    bmc_role = api.get("role", SYSTEM, f"vmbmc-{name}-bmc")
    assert bmc_role is not None
    assert bmc_role["rules"] == [
        {"apiGroups": ["virtualmachine.kubevirt.io"], "resources": ["virtualmachinebmcs"],
         "resourceNames": [name], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["virtualmachine.kubevirt.io"], "resources": ["virtualmachinebmcs/status"],
         "resourceNames": [name], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]  # fmt: skip
    vm_role = api.get("role", "tenant-a", f"vmbmc-{name}-vm")
    assert vm_role is not None
    assert vm_role["rules"] == [
        {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"], "resourceNames": ["web.1"],
         "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["kubevirt.io"], "resources": ["virtualmachineinstances"], "resourceNames": ["web.1"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["subresources.kubevirt.io"],
         "resources": ["virtualmachines/start", "virtualmachines/stop", "virtualmachines/restart",
                       "virtualmachineinstances/pause", "virtualmachineinstances/unpause"],
         "resourceNames": ["web.1"], "verbs": ["update"]},
        {"apiGroups": ["subresources.kubevirt.io"], "resources": ["virtualmachineinstances/console"],
         "resourceNames": ["web.1"], "verbs": ["get"]},
        {"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes"], "verbs": ["create"]},
        {"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes"],
         "resourceNames": [f"vmbmc-{name}-media"], "verbs": ["get", "watch", "delete"]},
        # the disk sizes: the root disk's DataVolume and its PVC (same name), by name
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "resourceNames": [ROOT_DV],
         "verbs": ["get"]},
        {"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes"], "resourceNames": [ROOT_DV],
         "verbs": ["get"]},
    ]  # fmt: skip
    assert "ownerReferences" not in vm_role["metadata"], "no cross-namespace ownerReference"
    for ns, rb_name in ((SYSTEM, f"vmbmc-{name}-bmc"), ("tenant-a", f"vmbmc-{name}-vm")):
        rb = api.get("rolebinding", ns, rb_name)
        assert rb is not None
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rb_name}
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": f"{name}-kbmc", "namespace": SYSTEM}]

    # NetworkPolicy
    np = api.get("networkpolicy", SYSTEM, f"{name}-kbmc")
    assert np is not None
    rule = np["spec"]["ingress"][0]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"virtualmachinebmc.kubevirt.io/client": "true"}}}
    ]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 10623), ("TCP", 8443)}
    assert [r["uid"] for r in np["metadata"]["ownerReferences"]] == [bmc["metadata"]["uid"]]
    assert np["spec"]["podSelector"]["matchLabels"][BMC_LABEL] == name

    # The VM is never written to.
    after = api.get("vm", "tenant-a", "web.1")
    assert after is not None
    assert not [f for f in after["metadata"].get("finalizers") or [] if "kubevirt.io/virtualMachine" not in f]
    assert set(after["metadata"].get("annotations") or {}) == set(vm["metadata"].get("annotations") or {})
    assert after["metadata"]["labels"] == vm["metadata"]["labels"]


def test_same_named_vms_in_two_namespaces_do_not_collide(api: Api, controller: Any) -> None:
    api.vm("a-b", "c")
    until(lambda: api.get("vmbmc", SYSTEM, "a-b-c"), 20, "BMC a-b-c")
    api.vm("a", "b-c")
    hashed = f"a-b-c-{hashlib.sha256(b'a/b-c').hexdigest()[:8]}"
    other = until(lambda: api.get("vmbmc", SYSTEM, hashed), 20, f"BMC {hashed}")
    assert other["metadata"]["annotations"]["virtualmachinebmc.kubevirt.io/vm"] == "a/b-c"
    first = api.get("vmbmc", SYSTEM, "a-b-c")
    assert first is not None
    assert first["metadata"]["annotations"]["virtualmachinebmc.kubevirt.io/vm"] == "a-b/c"


def test_opt_out_label(api: Api, controller: Any) -> None:
    api.vm("optout", "never", labels={"virtualmachinebmc.kubevirt.io/enabled": "false"})
    api.vm("optout", "later")
    until(lambda: api.get("vmbmc", SYSTEM, "optout-later"), 20, "BMC optout-later")
    assert api.get("vmbmc", SYSTEM, "optout-never") is None
    api.merge(
        "vm", "optout", "later", {"metadata": {"labels": {"virtualmachinebmc.kubevirt.io/enabled": "false"}}}
    )
    until(lambda: api.get("vmbmc", SYSTEM, "optout-later") is None, 20, "the opted-out BMC to go")


def test_vm_deleted_removes_bmc_and_all_children(api: Api, controller: Any) -> None:
    api.vm("gone", "vm1")
    name = "gone-vm1"
    until(lambda: bmc_ready(api, SYSTEM, name), 20, "BMC ready")
    assert api.get("role", "gone", f"vmbmc-{name}-vm") is not None
    # the kbmc's virtual CD, as it makes one (vmbmc.machine.media): in the VM's namespace, no owner
    api.create(data_volume(f"vmbmc-{name}-media", "gone", "http://127.0.0.1:9/boot.iso", {}))
    api.delete("vm", "gone", "vm1")
    until(lambda: api.get("vmbmc", SYSTEM, name) is None, 20, "the BMC to go")
    for kind, ns, child in (
        ("role", "gone", f"vmbmc-{name}-vm"),
        ("rolebinding", "gone", f"vmbmc-{name}-vm"),
        ("role", SYSTEM, f"vmbmc-{name}-bmc"),
        ("rolebinding", SYSTEM, f"vmbmc-{name}-bmc"),
        ("deployment", SYSTEM, f"{name}-kbmc"),
        ("service", SYSTEM, f"{name}-kbmc"),
        ("serviceaccount", SYSTEM, f"{name}-kbmc"),
        ("secret", SYSTEM, f"{name}-credentials"),
        ("datavolume", "gone", f"vmbmc-{name}-media"),
    ):
        until(lambda k=kind, n=ns, c=child: api.get(k, n, c) is None, 15, f"{kind} {ns}/{child} to go")


def _user_bmc(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "virtualmachine.kubevirt.io/v1",
        "kind": "VirtualMachineBMC",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def test_inline_credentials_are_copied_into_a_secret(api: Api, controller: Any) -> None:
    api.vm("tenant-c", "db")
    spec = {"vmNamespace": "tenant-c", "vmName": "db", "username": "root", "password": "s3cret-Inline-pass"}
    api.create(_user_bmc("tenant-c", "db-bmc", spec))
    bmc = until(lambda: bmc_ready(api, "tenant-c", "db-bmc"), 20, "user BMC ready")
    assert bmc["status"]["credentialsSecret"] == "db-bmc-credentials"
    secret = api.get("secret", "tenant-c", "db-bmc-credentials")
    assert secret is not None
    assert base64.b64decode(secret["data"]["password"]).decode() == "s3cret-Inline-pass"
    assert base64.b64decode(secret["data"]["username"]).decode() == "root"
    events = until(
        lambda: [e for e in api.list("event", "tenant-c") if e["reason"] == "InlineCredentials"], 10, "Event"
    )
    assert events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["name"] == "db-bmc"
    assert "authSecretRef" in events[0]["message"]
    dep = api.get("deployment", "tenant-c", "db-bmc-kbmc")
    assert "s3cret-Inline-pass" not in json.dumps(dep)
    pods = api.list("pod", "tenant-c", f"{BMC_LABEL}=db-bmc")
    assert pods and all("s3cret-Inline-pass" not in json.dumps(p) for p in pods)
    # a NetworkPolicy in this BMC namespace too
    assert api.get("networkpolicy", "tenant-c", "db-bmc-kbmc") is not None


def test_cross_namespace_bmc_is_refused(api: Api, controller: Any) -> None:
    api.vm("victim", "vm")
    api.namespace("attacker")
    api.create(_user_bmc("attacker", "steal", {"virtualMachineRef": {"namespace": "victim", "name": "vm"}}))

    def refused() -> Any:
        bmc = api.get("vmbmc", "attacker", "steal")
        cond = conditions(bmc).get("Ready") if bmc and bmc.get("status") else None
        return bmc if cond and cond["reason"] == "Refused" else None

    bmc = until(refused, 20, "the Refused condition")
    assert bmc["status"]["ready"] is False
    assert "victim" in conditions(bmc)["Ready"]["message"]
    events = until(
        lambda: [e for e in api.list("event", "attacker") if e["reason"] == "Refused"], 10, "Event"
    )
    assert events[0]["type"] == "Warning"
    assert api.get("deployment", "attacker", "steal-kbmc") is None
    assert api.list("role", "victim", f"{BMC_LABEL}=steal") == []


def test_redfish_insecure_http(api: Api, controller: Any) -> None:
    api.vm("rf", "vm")
    api.create(_user_bmc("rf", "rf-bmc", {"virtualMachineRef": {"name": "vm"},
                                          "redfish": {"enabled": True, "insecureHTTP": True}}))  # fmt: skip
    # `ready` (from the Deployment) and `endpoints` (from the reconcile) are written separately.
    bmc = until(
        lambda: (b := bmc_ready(api, "rf", "rf-bmc")) and "redfish" in b["status"].get("endpoints", {}) and b,
        20,
        "redfish BMC ready with its endpoints",
    )
    ip = bmc["status"]["serviceIP"]
    assert bmc["status"]["endpoints"] == {"ipmi": f"{ip}:623", "redfish": f"http://{ip}:443/redfish/v1"}
    svc = api.get("service", "rf", "rf-bmc-kbmc")
    assert {(p["port"], p["targetPort"], p["protocol"]) for p in svc["spec"]["ports"]} == {
        (623, 10623, "UDP"),
        (443, 8443, "TCP"),
    }
    dep = api.get("deployment", "rf", "rf-bmc-kbmc")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["args"][-1] == "--redfish-http"
    # the same-namespace VM Role carries an ownerReference; the VM-namespace pair exists once
    assert api.get("role", "rf", "vmbmc-rf-bmc-vm") is not None
    # Turning Redfish off again drops the endpoint and the port.
    api.merge("vmbmc", "rf", "rf-bmc", {"spec": {"redfish": {"enabled": False}}})
    until(
        lambda: (
            "redfish" not in (api.get("vmbmc", "rf", "rf-bmc") or {}).get("status", {}).get("endpoints", {})
        ),
        15,
        "the redfish endpoint to go",
    )
    svc = api.get("service", "rf", "rf-bmc-kbmc")
    assert [p["port"] for p in svc["spec"]["ports"]] == [623]


def test_bmc_pointed_at_another_namespace_moves_its_rights(api: Api, controller: Any) -> None:
    """A BMC's VM-namespace Role and RoleBinding follow its VM: re-pointed to a VM in another namespace,
    they are made there and removed where they were (only then does a reconcile look cluster-wide)."""
    api.vm("move-a", "vm")
    api.vm("move-b", "vm")
    name = "mover"
    api.create(_user_bmc(SYSTEM, name, {"virtualMachineRef": {"namespace": "move-a", "name": "vm"}}))
    until(lambda: bmc_ready(api, SYSTEM, name), 20, "the BMC ready for move-a/vm")
    for kind in ("role", "rolebinding"):
        assert api.get(kind, "move-a", f"vmbmc-{name}-vm") is not None
    api.merge("vmbmc", SYSTEM, name, {"spec": {"virtualMachineRef": {"namespace": "move-b", "name": "vm"}}})

    def moved() -> Any:
        bmc = bmc_ready(api, SYSTEM, name)
        return bmc if bmc and bmc["status"].get("virtualMachine") == "move-b/vm" else None

    until(moved, 20, "the BMC ready for move-b/vm")
    for kind in ("role", "rolebinding"):
        assert api.get(kind, "move-b", f"vmbmc-{name}-vm") is not None
        gone = f"the {kind} in move-a to go"
        until(lambda k=kind: api.get(k, "move-a", f"vmbmc-{name}-vm") is None, 15, gone)
    # a reconcile that does not move it leaves its rights where they are
    api.merge("vmbmc", SYSTEM, name, {"metadata": {"labels": {"touched": "yes"}}})
    api.merge("vmbmc", SYSTEM, name, {"spec": {"redfish": {"enabled": True}}})
    until(lambda: (bmc_ready(api, SYSTEM, name) or {}).get("status", {}).get("endpoints", {}).get("redfish"),
          20, "the Redfish endpoint")  # fmt: skip
    for kind in ("role", "rolebinding"):
        assert api.get(kind, "move-b", f"vmbmc-{name}-vm") is not None


def test_kbmc_role_follows_the_vms_disks(api: Api, controller: Any) -> None:
    """A VM whose disks name other PVCs (a disk added, one dropped) gets its kbmc Role rewritten: `get`
    by name on exactly the claims it names now, and no PVC rule at all once it names none."""
    vm = api.vm("tenant-a", "disks")
    name = "tenant-a-disks"
    until(lambda: bmc_ready(api, SYSTEM, name), 20, "the auto-created BMC to be ready")

    def claims() -> list[list[str]]:
        role = api.get("role", "tenant-a", f"vmbmc-{name}-vm") or {}
        return [r["resourceNames"] for r in role.get("rules", [])
                if r["resources"] == ["persistentvolumeclaims"]]

    assert claims() == [[ROOT_DV]]
    template = vm["spec"]["template"]["spec"]
    template["domain"]["devices"]["disks"].append({"name": "data", "disk": {}})
    template["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "data-claim"}})
    api.merge("vm", "tenant-a", "disks", {"spec": {"template": {"spec": template}}})
    until(lambda: claims() == [["data-claim", ROOT_DV]], 15, "the Role to name the new claim")
    template["domain"]["devices"]["disks"] = [d for d in template["domain"]["devices"]["disks"]
                                              if d["name"] == "installer"]
    template["volumes"] = [v for v in template["volumes"] if v["name"] == "installer"]
    api.merge("vm", "tenant-a", "disks", {"spec": {"template": {"spec": template}}})
    until(lambda: claims() == [], 15, "no PVC rule once the VM names no claim")
