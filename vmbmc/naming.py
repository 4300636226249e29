"""Names and labels of auto-created BMCs and of every child (DNS-1035 labels, hashed when too long or taken),
the CRD's identity, where the API serves BMCs and VMs, and the one reading of a BMC's VM.

Neutral and pure (it imports nothing of vmbmc): the controller names and labels what it creates with it,
the KubeVirt back end labels its DataVolumes and finds a BMC's VM with it, so neither imports the other.
The controller's handlers pass in what they know about existing BMCs, so the rules are unit-tested
without a cluster.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

GROUP = "virtualmachine.kubevirt.io"
VERSION = "v1"
PLURAL = "virtualmachinebmcs"
KIND = "VirtualMachineBMC"
API_VERSION = f"{GROUP}/{VERSION}"
VM_API_VERSION = "kubevirt.io/v1"
SYSTEM_NAMESPACE = "virtualmachinebmc-system"

LABEL_PREFIX = "virtualmachinebmc.kubevirt.io"
LABEL_BMC = f"{LABEL_PREFIX}/bmc"
LABEL_BMC_NAMESPACE = f"{LABEL_PREFIX}/bmc-namespace"  # only on the VM-namespace Role/RoleBinding
LABEL_VM_NAMESPACE = f"{LABEL_PREFIX}/vm-namespace"
LABEL_VM_NAME = f"{LABEL_PREFIX}/vm-name"
LABEL_ENABLED = f"{LABEL_PREFIX}/enabled"
LABEL_CLIENT = f"{LABEL_PREFIX}/client"
ANNOTATION_VM = f"{LABEL_PREFIX}/vm"
FINALIZER = f"{LABEL_PREFIX}/cleanup"
MANAGED_BY = "vmbmc-controller"

MAX_BMC_NAME = 57  # "<name>-kbmc" must stay a 63-character DNS label
HASHED_PREFIX = 48
MAX_LABEL_VALUE = 63


def bmc_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def vm_path(namespace: str, name: str | None = None, resource: str = "virtualmachines") -> str:
    base = f"/apis/{VM_API_VERSION}/namespaces/{namespace}/{resource}"
    return f"{base}/{name}" if name else base


def vm_ref(bmc: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a BMC's VM, from its spec: `virtualMachineRef` {namespace, name} or the seed's
    `vmNamespace`/`vmName`; no namespace means the BMC's own. The name is "" when the spec names none.
    The one reading of it, for the kbmc and the controller (never from labels)."""
    spec = bmc.get("spec") or {}
    own = str((bmc.get("metadata") or {}).get("namespace") or "")
    ref = spec.get("virtualMachineRef")
    if isinstance(ref, Mapping):
        return str(ref.get("namespace") or own), str(ref.get("name") or "")
    return str(spec.get("vmNamespace") or own), str(spec.get("vmName") or "")


def _hash8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def dns1035(text: str) -> str:
    """Lower case, `.` → `-`, anything else outside [a-z0-9-] → `-`; `vm-` in front unless it starts
    with a letter. The inputs are Kubernetes names, so only `.` and case actually occur."""
    name = re.sub(r"[^a-z0-9-]", "-", text.lower().replace(".", "-"))
    if not name[:1].isalpha():
        name = "vm-" + name
    return name


def plain_bmc_name(vm_namespace: str, vm_name: str) -> str:
    return dns1035(f"{vm_namespace}-{vm_name}")


def hashed_bmc_name(vm_namespace: str, vm_name: str) -> str:
    base = plain_bmc_name(vm_namespace, vm_name)[:HASHED_PREFIX].rstrip("-")
    return f"{base}-{_hash8(f'{vm_namespace}/{vm_name}')}"


def vm_key(vm_namespace: str, vm_name: str) -> str:
    return f"{vm_namespace}/{vm_name}"


def bmc_name_for(vm_namespace: str, vm_name: str, taken: Mapping[str, str] | None = None) -> str:
    """The auto-created BMC's name for a VM.

    `taken` maps BMC names already in use in the system namespace to the `ns/name` of their VM (from the
    `virtualmachinebmc.kubevirt.io/vm` annotation). The caller looks up the VM's existing BMC first
    (`find_existing`); this only decides the name of a new one.
    """
    plain = plain_bmc_name(vm_namespace, vm_name)
    owner = (taken or {}).get(plain)
    if len(plain) > MAX_BMC_NAME or (owner is not None and owner != vm_key(vm_namespace, vm_name)):
        return hashed_bmc_name(vm_namespace, vm_name)
    return plain


def label_value(value: str) -> str:
    """A label value of at most 63 characters: longer ones become 54 characters, `-`, 8 hex of sha256."""
    if len(value) <= MAX_LABEL_VALUE:
        return value
    return f"{value[:54]}-{_hash8(value)}"


def vm_labels(vm_namespace: str, vm_name: str) -> dict[str, str]:
    return {LABEL_VM_NAMESPACE: label_value(vm_namespace), LABEL_VM_NAME: label_value(vm_name)}


def bmc_labels(bmc_name: str, vm_namespace: str, vm_name: str) -> dict[str, str]:
    """Labels of an auto-created BMC."""
    return {
        "app.kubernetes.io/name": "vmbmc",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_BMC: label_value(bmc_name),
        **vm_labels(vm_namespace, vm_name),
    }


def child_labels(bmc_name: str, vm_namespace: str, vm_name: str) -> dict[str, str]:
    return {**bmc_labels(bmc_name, vm_namespace, vm_name), "app.kubernetes.io/component": "kbmc"}


def is_auto_created(bmc: Mapping[str, Any]) -> bool:
    labels = (bmc.get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/managed-by") == MANAGED_BY


def find_existing(bmcs: Iterable[Mapping[str, Any]], vm_namespace: str, vm_name: str) -> str | None:
    """The name of the VM's auto-created BMC among `bmcs` (labels and annotation must all match)."""
    want = vm_labels(vm_namespace, vm_name)
    for bmc in bmcs:
        meta = bmc.get("metadata") or {}
        labels = meta.get("labels") or {}
        if not is_auto_created(bmc):
            continue
        if all(labels.get(k) == v for k, v in want.items()) and (meta.get("annotations") or {}).get(
            ANNOTATION_VM
        ) == vm_key(vm_namespace, vm_name):
            return str(meta["name"])
    return None


# Names of children, all derived from the BMC's name.
def kbmc_name(bmc: str) -> str:
    return f"{bmc}-kbmc"


def credentials_name(bmc: str) -> str:
    return f"{bmc}-credentials"


def bmc_role_name(bmc: str) -> str:
    return f"vmbmc-{bmc}-bmc"


def vm_role_name(bmc: str) -> str:
    return f"vmbmc-{bmc}-vm"


def subscriptions_name(bmc: str) -> str:
    """The Secret holding the BMC's Redfish event subscriptions (the controller creates it empty)."""
    return f"{bmc}-event-subscriptions"
