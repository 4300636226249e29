"""The manifests of a BMC's children (names, labels, ownership, ports, Roles): pure functions of the BMC
and options."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from vmbmc import naming as n
from vmbmc.auth.passwords import generate_password as generate_password
from vmbmc.machine.inventory import disk_claims
from vmbmc.machine.media import data_volume_name as media_dv_name

IPMI_PORT = 10623
SERVICE_IPMI_PORT = 623
SERVICE_REDFISH_PORT = 443  # HTTPS, or plain HTTP with spec.redfish.insecureHTTP
REDFISH_PORT = 8443
HEALTH_PORT = 8081
CREDENTIALS_DIR = "/etc/vmbmc/credentials"


@dataclass(frozen=True)
class BmcInfo:
    """What the builders need to know about one BMC."""

    namespace: str
    name: str
    uid: str
    vm_namespace: str
    vm_name: str
    ipmi: bool = True
    redfish: bool = False
    insecure_http: bool = False
    service_type: str = "ClusterIP"

    @classmethod
    def from_body(cls, bmc: dict[str, Any]) -> BmcInfo:
        meta, spec = bmc.get("metadata") or {}, bmc.get("spec") or {}
        vm_ns, vm_name = n.vm_ref(bmc)
        redfish = spec.get("redfish") or {}
        return cls(
            namespace=str(meta.get("namespace")),
            name=str(meta.get("name")),
            uid=str(meta.get("uid") or ""),
            vm_namespace=vm_ns,
            vm_name=vm_name,
            ipmi=bool((spec.get("ipmi") or {}).get("enabled", True)),
            redfish=bool(redfish.get("enabled", False)),
            insecure_http=bool(redfish.get("insecureHTTP", False)),
            service_type=str((spec.get("service") or {}).get("type") or "ClusterIP"),
        )

    @property
    def labels(self) -> dict[str, str]:
        return n.child_labels(self.name, self.vm_namespace, self.vm_name)

    @property
    def owner(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{n.GROUP}/{n.VERSION}",
            "kind": n.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def meta(self, name: str, *, owned: bool = True, namespace: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace or self.namespace,
            "labels": self.labels,
            "annotations": {n.ANNOTATION_VM: n.vm_key(self.vm_namespace, self.vm_name)},
        }
        if owned:
            meta["ownerReferences"] = [self.owner]
        return meta


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def service_account(b: BmcInfo) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": b.meta(n.kbmc_name(b.name))}


def credentials_secret(b: BmcInfo, username: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": b.meta(n.credentials_name(b.name)),
        "type": "Opaque",
        "data": {"username": b64(username), "password": b64(password)},
    }


def bmc_role(b: BmcInfo, shared_secret: str | None = None) -> dict[str, Any]:
    """The kbmc's rights in the BMC's namespace: its own BMC and its status, and creating Events. A
    shared kbmc reads the BMC's credentials Secret by name too (`shared_secret`): a mounted volume would
    need a pod restart for every added BMC."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": b.meta(n.bmc_role_name(b.name)),
        "rules": [
            {
                "apiGroups": [n.GROUP],
                "resources": [n.PLURAL],
                "resourceNames": [b.name],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": [n.GROUP],
                "resources": [f"{n.PLURAL}/status"],
                "resourceNames": [b.name],
                "verbs": ["get", "patch"],
            },
            # create cannot be limited by name (the name does not exist yet)
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        ],
    }
    if shared_secret:
        role["rules"].append(
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [shared_secret], "verbs": ["get"]}
        )
    return role


def vm_role(b: BmcInfo, vm: dict[str, Any] | None = None) -> dict[str, Any]:
    """The kbmc's rights in the VM's namespace: its own VM, VMI and their lifecycle subresources, and
    `get` on the PVCs and DataVolumes its disks name (`vm`: the VM as last seen; none, no such rule).

    No ownerReference: the owner may live in another namespace, and Kubernetes' garbage collector would
    delete the Role at once; the BMC's finalizer deletes it by its labels instead."""
    vm_names = [b.vm_name]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _vm_ns_meta(b, n.vm_role_name(b.name)),
        "rules": [
            {
                "apiGroups": ["kubevirt.io"],
                "resources": ["virtualmachines"],
                "resourceNames": vm_names,
                "verbs": ["get", "list", "watch", "patch"],
            },
            {
                "apiGroups": ["kubevirt.io"],
                "resources": ["virtualmachineinstances"],
                "resourceNames": vm_names,
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["subresources.kubevirt.io"],
                "resources": [
                    "virtualmachines/start",
                    "virtualmachines/stop",
                    "virtualmachines/restart",
                    "virtualmachineinstances/pause",
                    "virtualmachineinstances/unpause",
                ],
                "resourceNames": vm_names,
                "verbs": ["update"],
            },
            {  # Serial over LAN: the VM's serial console (a WebSocket GET)
                "apiGroups": ["subresources.kubevirt.io"],
                "resources": ["virtualmachineinstances/console"],
                "resourceNames": vm_names,
                "verbs": ["get"],
            },
            # VirtualMedia: its one DataVolume by name; `create` cannot be limited by name (the kbmc only
            # ever creates vmbmc-<bmc>-media, and CDI's own admission bounds what a DataVolume may read)
            {"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes"], "verbs": ["create"]},
            {
                "apiGroups": ["cdi.kubevirt.io"],
                "resources": ["datavolumes"],
                "resourceNames": [media_dv_name(b.name)],
                "verbs": ["get", "watch", "delete"],
            },
        ],
    }
    role["rules"].extend(disk_rules(vm))
    return role


def disk_rules(vm: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`get`, by name, on the PVCs and DataVolumes the VM's disks name: their sizes are the disk sizes
    Redfish reports (Ironic's inspection). A rule only for names there are: an empty `resourceNames`
    would grant every object."""
    pvcs, dvs = disk_claims(vm) if vm is not None else ((), ())
    rules: list[dict[str, Any]] = []
    if pvcs:
        rules.append({"apiGroups": [""], "resources": ["persistentvolumeclaims"],
                      "resourceNames": list(pvcs), "verbs": ["get"]})
    if dvs:
        rules.append({"apiGroups": ["cdi.kubevirt.io"], "resources": ["datavolumes"],
                      "resourceNames": list(dvs), "verbs": ["get"]})
    return rules


def _vm_ns_meta(b: BmcInfo, name: str) -> dict[str, Any]:
    meta = b.meta(name, owned=b.vm_namespace == b.namespace, namespace=b.vm_namespace)
    meta["labels"] = {**meta["labels"], n.LABEL_BMC_NAMESPACE: n.label_value(b.namespace)}
    return meta


def _binding(b: BmcInfo, meta: dict[str, Any], role: str, account: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [
            {"kind": "ServiceAccount", "name": account or n.kbmc_name(b.name), "namespace": b.namespace}
        ],
    }


def bmc_role_binding(b: BmcInfo, account: str | None = None) -> dict[str, Any]:
    """Bound to the BMC's own ServiceAccount, or to `account` (the shared kbmc's)."""
    return _binding(b, b.meta(n.bmc_role_name(b.name)), n.bmc_role_name(b.name), account)


def vm_role_binding(b: BmcInfo, account: str | None = None) -> dict[str, Any]:
    return _binding(b, _vm_ns_meta(b, n.vm_role_name(b.name)), n.vm_role_name(b.name), account)


def _pod_selector(b: BmcInfo, shared: bool) -> dict[str, Any]:
    """The kbmc pod of this BMC: its own, or the namespace's shared one. The other mode's keys are null,
    so a merge patch removes them when the BMC switches modes."""
    if shared:
        return {n.LABEL_BMC: None, "app.kubernetes.io/name": "vmbmc", "app.kubernetes.io/component": SHARED}
    return {n.LABEL_BMC: n.label_value(b.name), "app.kubernetes.io/component": "kbmc"}


SHARED = "kbmc-shared"  # the shared kbmc pod's component label (vmbmc.controller.shared)



def kbmc_pod_security() -> dict[str, Any]:
    """The kbmc pod's securityContext, in both modes (Pod Security `restricted`: non-root, the image's
    UID, the runtime's default seccomp profile)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def kbmc_container(
    image: str,
    args: list[str],
    ports: list[dict[str, Any]],
    resources: dict[str, Any],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    """The kbmc container as both modes run it: probes on the health port, Pod Security `restricted`
    plus a read-only root filesystem, and its pod name for the Events' reportingInstance."""
    return {
        "name": "kbmc",
        "image": image,
        "args": args,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": ports,
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": HEALTH_PORT}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": HEALTH_PORT},
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": resources,
        "volumeMounts": mounts,
    }

def deployment(b: BmcInfo, image: str, secret_name: str) -> dict[str, Any]:
    args = [
        "kbmc",
        "--bmc",
        f"{b.namespace}/{b.name}",
        "--ipmi-port",
        str(IPMI_PORT),
        "--advertised-ipmi-port",  # clients reach the Service's port; SOL and Redfish name it
        str(SERVICE_IPMI_PORT),
        "--redfish-port",
        str(REDFISH_PORT),
        "--health-port",
        str(HEALTH_PORT),
        "--credentials-dir",
        CREDENTIALS_DIR,
    ]
    if b.redfish and b.insecure_http:
        args.append("--redfish-http")
    ports: list[dict[str, Any]] = [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}]
    if b.ipmi:
        ports.insert(0, {"name": "ipmi", "containerPort": IPMI_PORT, "protocol": "UDP"})
    if b.redfish:
        ports.insert(-1, {"name": "redfish", "containerPort": REDFISH_PORT, "protocol": "TCP"})
    selector = {n.LABEL_BMC: n.label_value(b.name), "app.kubernetes.io/component": "kbmc"}
    container = kbmc_container(
        image,
        args,
        ports,
        {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        [
            {"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": b.meta(n.kbmc_name(b.name)),
        "spec": {
            "replicas": 1,
            # Never two kbmcs for one VM: two writers of the same status and two IPMI answerers.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": b.labels},
                "spec": {
                    "serviceAccountName": n.kbmc_name(b.name),
                    "automountServiceAccountToken": True,
                    "securityContext": kbmc_pod_security(),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "credentials",
                            "secret": {"secretName": secret_name, "defaultMode": 0o440},
                        },
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def service(b: BmcInfo, targets: tuple[int, int] | None = None) -> dict[str, Any]:
    """`targets`: in shared mode, this BMC's own (IPMI, Redfish) ports in the shared pod."""
    ipmi_target, redfish_target = targets or (IPMI_PORT, REDFISH_PORT)
    ports: list[dict[str, Any]] = []
    if b.ipmi:
        ipmi = {"name": "ipmi", "port": SERVICE_IPMI_PORT, "targetPort": ipmi_target, "protocol": "UDP"}
        ports.append(ipmi)
    if b.redfish:
        ports.append(
            {"name": "redfish", "port": SERVICE_REDFISH_PORT, "targetPort": redfish_target, "protocol": "TCP"}
        )
    if not ports:
        # A Service needs a port; the health port keeps it valid when both front ends are off.
        ports.append({"name": "health", "port": HEALTH_PORT, "targetPort": HEALTH_PORT, "protocol": "TCP"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": b.meta(n.kbmc_name(b.name)),
        "spec": {
            "type": b.service_type,
            "selector": _pod_selector(b, targets is not None),
            "ports": ports,
        },
    }


def network_policy(b: BmcInfo, targets: tuple[int, int] | None = None) -> dict[str, Any]:
    """Only pods labelled as BMC clients reach this BMC's kbmc ports.

    One per BMC, owned by it (so the garbage collector removes it with the BMC). Not one shared per
    namespace: a shared object owned by every BMC is a write hot spot (1,000 BMCs created at once
    fought over its owner list for minutes) and grows with the namespace. In shared mode each BMC's
    policy selects the shared pod and admits this BMC's own ports (`targets`): policies add up, so the
    shared pod admits every served BMC's ports and nothing else."""
    ipmi_target, redfish_target = targets or (IPMI_PORT, REDFISH_PORT)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": b.meta(n.kbmc_name(b.name)),
        "spec": {
            "podSelector": {"matchLabels": _pod_selector(b, targets is not None)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {n.LABEL_CLIENT: "true"}}}],
                    "ports": [
                        {"protocol": "UDP", "port": ipmi_target},
                        {"protocol": "TCP", "port": redfish_target},
                    ],
                },
                # health and metrics stay reachable for probes and Prometheus
                {"ports": [{"protocol": "TCP", "port": HEALTH_PORT}]},
            ],
        },
    }
