"""One VM as its BMC's Machine sees it: the watch caches, fresh reads, guarded patches, and the tasks
that work on it. The power, boot and media collaborators of `KubeVirtMachine` share this one object, so
each sees our own last write before the watch delivers it, and `close` cancels all their work at once.

Everything runs on the hub's asyncio loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from vmbmc.k8s.client import JSON_PATCH, ApiClient, ApiError
from vmbmc.k8s.informer import Informer, OwnWrites
from vmbmc.kubevirt.errors import machine_error
from vmbmc.kubevirt.records import RecordStore
from vmbmc.kubevirt.requests import RequestLog
from vmbmc.machine import boot
from vmbmc.machine.errors import NotFound
from vmbmc.naming import vm_path


class KubeVirtVm:
    def __init__(
        self,
        api: ApiClient,
        loop: asyncio.AbstractEventLoop,
        namespace: str,
        name: str,
        *,
        vms: Informer,
        vmis: Informer,
        store: RecordStore,
        requests: RequestLog,
        bmc: str | None,
    ) -> None:
        self.api = api
        self.loop = loop
        self.namespace, self.name = namespace, name
        self.ref = f"{namespace}/{name}"  # for messages and logs
        self.bmc = bmc
        self.vms, self.vmis = vms, vmis
        self.store = store
        self.requests = requests
        self._own_vm = OwnWrites(vms)  # our own last VM patch's answer, until the watch shows it
        self._changed = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()

    # --- the cache ---------------------------------------------------------------------------
    def current(self) -> dict[str, Any]:
        """The newest VM we know (our own write until the watch shows it); NotFound when there is none."""
        # Standalone mode: the record holder is the VM itself, so our annotation writes are VM versions too.
        own = self.store if self.store.kind == "VirtualMachine" else None
        vm = own.current() if own is not None else self._own_vm.current(self.name)
        if vm is None:
            raise NotFound(f"VirtualMachine {self.ref} not found")
        return vm

    def note(self, vm: dict[str, Any]) -> None:
        """Our own write's answer is the newest VM we know until the watch delivers it."""
        if self.store.kind == "VirtualMachine":
            self.store.note(vm)
        else:
            self._own_vm.note(vm)

    def vmi(self) -> dict[str, Any] | None:
        return self.vmis.get(self.name)

    def changed(self) -> None:
        """On the loop, for every change of the VM, VMI or record holder: wake `wait_change`."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, timeout: float) -> None:
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    # --- the API -----------------------------------------------------------------------------
    def _timeout(self, deadline: float | None) -> float:
        return 10.0 if deadline is None else max(0.1, deadline - self.loop.time())

    async def fresh(self, deadline: float | None = None) -> dict[str, Any] | None:
        """The VM read from the API server (None: gone), before `deadline` (loop time)."""
        try:
            return await self.api.request(
                "GET", vm_path(self.namespace, self.name), timeout=self._timeout(deadline)
            )
        except ApiError as err:
            if err.code == 404:
                return None
            raise machine_error(err, f"VirtualMachine {self.ref}") from err

    async def fresh_vmi(self, deadline: float | None = None) -> dict[str, Any] | None:
        try:
            return await self.api.request(
                "GET",
                vm_path(self.namespace, self.name, "virtualmachineinstances"),
                timeout=self._timeout(deadline),
            )
        except ApiError as err:
            if err.code == 404:
                return None
            raise machine_error(err, f"VirtualMachineInstance {self.ref}") from err

    async def patch(self, vm: dict[str, Any], ops: list[dict[str, Any]]) -> None:
        """A JSON Patch of the VM guarded by `vm`'s uid and resourceVersion (ApiError 409/422 when stale)."""
        self.note(
            await self.api.request(
                "PATCH",
                vm_path(self.namespace, self.name),
                body=boot.guard_ops(vm) + ops,
                content_type=JSON_PATCH,
            )
        )

    # --- work on the loop ----------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task of this VM's Machine (cancelled by `close`)."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def future(self) -> asyncio.Future[Any]:
        """The answer to one request. An IPMI client hears its answer before the call is made, so nobody
        may await it: reading its exception here keeps asyncio from reporting it as lost."""
        future = self.loop.create_future()
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        return future

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
