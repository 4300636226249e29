"""KubeVirtHub: one API connection and its watch caches, handing out a `Machine` per BMC.

Unrestricted (the demo, benchmarks, an admin identity): one shared watch per namespace and resource, so
a thousand BMCs in one process cost three watches per namespace. Restricted (a kbmc pod): the pod's
Roles allow list/watch only on its own objects (`resourceNames`), which the API server honours only
for a list/watch with `fieldSelector=metadata.name=<name>`, so each resource gets its own watch.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from vmbmc.k8s.client import ApiClient, ApiError
from vmbmc.k8s.informer import Informer
from vmbmc.kubevirt.errors import machine_error
from vmbmc.kubevirt.machine import KubeVirtMachine
from vmbmc.kubevirt.records import BmcStatusStore, RecordStore, VmAnnotationStore
from vmbmc.kubevirt.requests import EventWriter
from vmbmc.kubevirt.shared_roster import SharedRoster
from vmbmc.machine.api import Machine
from vmbmc.machine.errors import BackendUnavailable, Invalid, NotFound
from vmbmc.naming import bmc_path, vm_path, vm_ref

log = logging.getLogger(__name__)

SYNC_TIMEOUT = 10.0  # how long machine_for_* waits for a first list


class KubeVirtHub:
    def __init__(self, api: ApiClient, loop: asyncio.AbstractEventLoop) -> None:
        self.api = api
        self.loop = loop
        self.events = EventWriter(api, salt=secrets.token_hex(8))
        self._informers: dict[tuple[str, str | None], Informer] = {}
        self._machines: dict[int, tuple[KubeVirtMachine, list[Informer]]] = {}
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> KubeVirtHub:
        """`kubeconfig` None: the in-cluster service account, else KUBECONFIG / ~/.kube/config."""
        return cls(await ApiClient.connect(kubeconfig), asyncio.get_running_loop())

    # --- watch caches -------------------------------------------------------------------------
    async def _informer(self, path: str, name: str | None) -> Informer:
        """The shared cache of `path` (a namespaced collection), or one limited to `name`."""
        selector = f"metadata.name={name}" if name else None
        key = (path, selector)
        async with self._lock:
            inf = self._informers.get(key)
            if inf is None:
                inf = Informer(self.api, path, field_selector=selector)
                self._informers[key] = inf
                inf.start()
            inf.refcount += 1
        deadline = self.loop.time() + SYNC_TIMEOUT
        try:
            await asyncio.wait_for(inf.first_result.wait(), SYNC_TIMEOUT)
            err = inf.last_error
            if not inf.synced.is_set() and err is not None and 400 <= err.code < 500 and err.code != 429:
                raise machine_error(err, path)  # 403, 404 (CRD not served): no point in waiting
            await asyncio.wait_for(inf.synced.wait(), max(0.0, deadline - self.loop.time()))
        except TimeoutError:
            await self._unref([inf])
            raise BackendUnavailable(f"the Kubernetes API did not answer a list of {path}") from None
        except BaseException:
            await self._unref([inf])
            raise
        return inf

    async def _unref(self, informers: list[Informer]) -> None:
        for inf in informers:
            inf.refcount -= 1
            if inf.refcount <= 0:
                self._informers.pop((inf.path, inf.field_selector), None)
                await inf.stop()

    # --- machines ------------------------------------------------------------------------------
    def shared_roster(self, namespace: str) -> SharedRoster:
        """The roster, credentials and `status.serving` of a shared kbmc's namespace (shared mode)."""
        return SharedRoster(self.api, namespace, lambda name: self.cached_bmc(namespace, name))

    def cached_bmc(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The VirtualMachineBMC as this hub's watch of it last saw it (None: not watched here)."""
        for selector in (f"metadata.name={name}", None):
            inf = self._informers.get((bmc_path(namespace), selector))
            if inf is not None and inf.get(name) is not None:
                return inf.get(name)
        return None

    async def machine_for_bmc(self, namespace: str, name: str, *, restricted: bool = False) -> Machine:
        """A Machine for the VirtualMachineBMC `namespace/name` (its VM from `spec.virtualMachineRef`
        or the seed's `spec.vmNamespace`/`spec.vmName`); records go to its status, Events on it."""
        bmcs = await self._informer(bmc_path(namespace), name if restricted else None)
        held = [bmcs]
        try:
            bmc = bmcs.get(name)
            if bmc is None:
                raise NotFound(f"VirtualMachineBMC {namespace}/{name} not found")
            vm_ns, vm_name = vm_ref(bmc)
            if not vm_name:
                raise Invalid(f"VirtualMachineBMC {namespace}/{name} names no VM")
            store = BmcStatusStore(self.api, bmcs, namespace, name)
            return await self._machine(vm_ns, vm_name, store, f"{namespace}/{name}", restricted, held)
        except BaseException:
            await self._unref(held)
            raise

    async def machine_for_vm(self, namespace: str, name: str, *, restricted: bool = False) -> Machine:
        """Standalone mode (no CRD): state and request records in VM annotations, Events on the VM."""
        held: list[Informer] = []
        vms = await self._informer(vm_path(namespace), name if restricted else None)
        held.append(vms)
        try:
            store = VmAnnotationStore(self.api, vms, namespace, name)
            return await self._machine(namespace, name, store, None, restricted, held)
        except BaseException:
            await self._unref(held)
            raise

    async def _machine(
        self,
        namespace: str,
        name: str,
        store: RecordStore,
        bmc: str | None,
        restricted: bool,
        held: list[Informer],
    ) -> KubeVirtMachine:
        only = name if restricted else None
        vms = await self._informer(vm_path(namespace), only)
        held.append(vms)
        vmis = await self._informer(vm_path(namespace, resource="virtualmachineinstances"), only)
        held.append(vmis)
        machine = KubeVirtMachine(
            namespace, name, api=self.api, loop=self.loop, events=self.events,
            vms=vms, vmis=vmis, store=store, bmc=bmc,
        )
        if (vm := vms.get(name)) is not None:
            machine.volumes.follow(vm)  # the disk sizes, read before a client asks
        self._machines[id(machine)] = (machine, held)
        machine.check_once_restore()  # an override consumed while no kbmc was running
        machine.recover_requests()  # records a killed kbmc left pending
        log.info("machine ready", extra={"vm": machine.vm, "bmc": bmc, "restricted": restricted})
        return machine

    async def release(self, machine: Machine) -> None:
        entry = self._machines.pop(id(machine), None)
        if entry is None:
            return
        entry[0].close()
        await self._unref(entry[1])

    def ready(self) -> bool:
        """Every watch has synced at least once (for /readyz)."""
        return all(inf.synced.is_set() for inf in self._informers.values())

    async def close(self) -> None:
        for machine, _ in list(self._machines.values()):
            machine.close()
        self._machines.clear()
        for inf in list(self._informers.values()):
            await inf.stop()
        self._informers.clear()
        await self.api.close()


__all__ = ["ApiError", "KubeVirtHub"]
