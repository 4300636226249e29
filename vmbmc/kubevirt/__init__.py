"""The KubeVirt back end of the state machine: API client, shared watch caches, the concrete Machine."""

from vmbmc.kubevirt.hub import KubeVirtHub, vm_ref
from vmbmc.kubevirt.machine import KubeVirtMachine

__all__ = ["KubeVirtHub", "KubeVirtMachine", "vm_ref"]
