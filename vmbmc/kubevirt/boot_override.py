"""The boot override on KubeVirt: decided at once from the cache, then stored and patched into the VM
within CALL_BOUND_SECONDS of its record's opening, as a power call is (docs/power-history.md).

The stored override is written first (a crash then leaves a record, never a lost backup), then the VM's
boot order and firmware are patched, guarded by uid and resourceVersion. A patch that fails for good
puts the record back; one that got no answer is handed to `BootRestore`, which undoes it should it land.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from vmbmc.k8s.client import JSON_PATCH, NOT_SENT, ApiError
from vmbmc.kubevirt.answers import BOOT_PREFIX, Answers, Remembered
from vmbmc.kubevirt.boot_restore import PATCH_RETRIES, BootRestore, LatePatch
from vmbmc.kubevirt.errors import machine_error
from vmbmc.kubevirt.vm import KubeVirtVm
from vmbmc.machine import boot
from vmbmc.machine.errors import BackendUnavailable, Busy, MachineError, NotFound, Unanswered
from vmbmc.machine.observe import vmi_uid
from vmbmc.machine.requests import BOOT_ACTION, CALL_BOUND_SECONDS
from vmbmc.machine.types import BootMode, BootOverride, BootPersistence, BootTarget, Effect, Requester
from vmbmc.naming import vm_path

log = logging.getLogger(__name__)


@dataclass
class _BootAttempt:
    """What one boot override request has written so far, for its answer and its roll-back."""

    before: boot.StoredOverride | None = None  # the stored override when the request got the lock
    stored: boot.StoredOverride | None = None  # the stored override as this request last wrote it
    commit_sent: bool = False  # the commit write is sent and not answered yet
    deadline: float = 0.0  # loop time: the call bound
    late: LatePatch | None = None  # the VM patch in flight, should it never be answered


class BootOverrides:
    def __init__(self, vm: KubeVirtVm, answers: Answers, restore: BootRestore) -> None:
        self.vm = vm
        self.answers = answers
        self.restore = restore
        self.lock = restore.lock  # one boot write at a time, restores included
        # While a boot request has stored its override and not yet committed it, reads show the stored
        # override as it was: a client that heard C0h never reads back a change it was not promised.
        self._before: tuple[boot.StoredOverride | None] | None = None

    # --- reads ----------------------------------------------------------------------------
    def current(self) -> BootOverride:
        vm = self.vm.current()
        stored = self.vm.store.override() if self._before is None else self._before[0]
        return boot.reported(vm, stored)

    # --- requests ---------------------------------------------------------------------------
    def submit(
        self,
        requester: Requester,
        target: BootTarget | None,
        enabled: BootPersistence | None,
        mode: BootMode | None,
    ) -> tuple[BootOverride, asyncio.Future[BootOverride] | None]:
        """Decide at once (NotSupported / Invalid raised here) and schedule the write; the future is the
        write's outcome. A request id seen before gets the first request's answer."""
        key = f"{BOOT_PREFIX}{requester.request_id}"
        seen = self.answers.get(key)
        if seen is not None and seen.boot is not None:
            return seen.boot, seen.future
        if self.vm.vms.stale:
            raise BackendUnavailable("the Kubernetes API is unreachable; cannot change the boot order now")
        vm = self.vm.current()
        plan = boot.plan_override(
            vm, self.vm.store.override(), vmi_uid(self.vm.vmi()), target=target, enabled=enabled, mode=mode
        )  # raises NotSupported / Invalid at once
        future: asyncio.Future[Any] = self.vm.future()
        self.answers.put(key, Remembered(at=time.monotonic(), future=future, boot=plan.result))
        log.info(
            "boot override accepted",
            extra={
                "vm": self.vm.ref,
                "target": plan.result.target.value,
                "enabled": plan.result.enabled.value,
                "mode": plan.result.mode.value,
                "protocol": requester.protocol.value,
                "user": requester.user,
                "client": requester.client,
                "request_id": requester.request_id,
            },
        )
        self.vm.spawn(self._apply(requester, target, enabled, mode, future, plan.result))
        return plan.result, future

    async def _apply(
        self,
        requester: Requester,
        target: BootTarget | None,
        enabled: BootPersistence | None,
        mode: BootMode | None,
        future: asyncio.Future[BootOverride],
        shown: BootOverride,
    ) -> None:
        """Record the request, then store and patch within CALL_BOUND_SECONDS of the record's opening
        (as a power call: nothing of it is sent after the bound). The answer is the commit point's: the
        VM patch, or the record write when the VM already is as asked (docs/power-history.md)."""
        deadline = self.vm.loop.time() + CALL_BOUND_SECONDS
        what = f"{shown.target.value}, {shown.enabled.value}, {shown.mode.value}"
        attempt = _BootAttempt()
        requests = self.vm.requests
        try:
            try:
                async with asyncio.timeout_at(deadline):  # the record and the wait for an earlier override
                    await requests.open(requester, BOOT_ACTION, Effect.PENDING, what=what)
                    await self.lock.acquire()
            except TimeoutError as err:
                raise BackendUnavailable(
                    f"the boot override could not be recorded and started within {CALL_BOUND_SECONDS:g} s "
                    "(the API server, or an earlier boot request of this BMC, did not finish); nothing was "
                    "changed in the VM"
                ) from err
            try:
                result = await self._apply_bounded(requester, target, enabled, mode, attempt, deadline)
            except MachineError:
                if attempt.late is not None:
                    self.restore.watch(attempt.late)  # watched from now on: undone if it lands
                await self._roll_back_record(attempt)  # still holding the lock: no other override between
                raise
            finally:
                self._before = None
                self.lock.release()
        except MachineError as err:
            outcome = Effect.UNKNOWN if isinstance(err, Unanswered) else Effect.FAILED
            log.warning(
                "boot override unanswered" if outcome is Effect.UNKNOWN else "boot override failed",
                extra={"vm": self.vm.ref, "error": err.message, "request_id": requester.request_id},
            )
            await requests.settle(requester, BOOT_ACTION, outcome, err.message)
            future.set_exception(err)
            return
        await requests.settle(requester, BOOT_ACTION, Effect.CALLED)
        future.set_result(result)

    async def _apply_bounded(
        self,
        requester: Requester,
        target: BootTarget | None,
        enabled: BootPersistence | None,
        mode: BootMode | None,
        attempt: _BootAttempt,
        deadline: float,
    ) -> BootOverride:
        """`_apply_locked` until `deadline`: a commit write still unanswered then may yet be carried
        out (Unanswered: `unknown`); anything else unfinished was certainly not (BackendUnavailable)."""
        attempt.before = self.vm.store.override()
        attempt.stored = attempt.before
        attempt.deadline = deadline
        self._before = (attempt.before,)
        try:
            async with asyncio.timeout_at(deadline):
                return await self._apply_locked(requester, target, enabled, mode, attempt)
        except TimeoutError as err:
            if attempt.commit_sent:
                raise Unanswered(
                    f"no answer from the Kubernetes API within {CALL_BOUND_SECONDS:g} s; the change is not "
                    "sent again, and is undone should it still be carried out"
                ) from err
            attempt.late = None
            raise BackendUnavailable(
                f"the boot override could not be applied within {CALL_BOUND_SECONDS:g} s; nothing was "
                "changed in the VM"
            ) from err

    async def _roll_back_record(self, attempt: _BootAttempt) -> None:
        """Put the stored override back as it was when the request began (bounded; the kbmc's own record,
        not a change of the VM), so a record never names an override the VM did not get."""
        if attempt.stored == attempt.before:
            return
        try:
            async with asyncio.timeout(CALL_BOUND_SECONDS):
                await self.vm.store.write_override(attempt.before)
        except (ApiError, TimeoutError):
            log.exception("could not roll back the boot override record", extra={"vm": self.vm.ref})

    async def _apply_locked(
        self,
        requester: Requester,
        target: BootTarget | None,
        enabled: BootPersistence | None,
        mode: BootMode | None,
        attempt: _BootAttempt,
    ) -> BootOverride:
        """Store the override (status first: a crash then leaves a record, never a lost backup), then
        patch the VM guarded by uid and resourceVersion; a stale read is re-read and re-planned. If the
        VM patch fails for good, the caller puts the record back: no half-applied override stays."""
        before = attempt.before
        store = self.vm.store
        vm: dict[str, Any] | None = self.vm.current()
        for tries in range(PATCH_RETRIES):
            if vm is None:
                raise NotFound(f"VirtualMachine {self.vm.ref} not found")
            plan = boot.plan_override(
                vm,
                before,
                vmi_uid(self.vm.vmi()),
                target=target,
                enabled=enabled,
                mode=mode,
                request_id=requester.request_id,
            )
            try:
                if plan.stored != attempt.stored:
                    if not plan.ops:  # the record is all that changes: its write is the commit point
                        attempt.commit_sent = True
                    await store.write_override(plan.stored)
                    attempt.commit_sent = False
                    attempt.stored = plan.stored
                    if store.kind == "VirtualMachine":
                        # the annotation write changed the VM's resourceVersion: patch that version
                        vm = store.current()
                        if vm is not None:
                            self.vm.note(vm)
                if plan.ops:
                    assert vm is not None
                    await self._patch_once(vm, plan.ops, requester, attempt)
                return plan.result
            except ApiError as err:
                attempt.commit_sent = False  # answered: it was not carried out
                if err.code in (409, 422) and tries < PATCH_RETRIES - 1:
                    vm = await self.vm.fresh()  # changed since we read it: read again, plan again
                    continue
                raise machine_error(err, f"VirtualMachine {self.vm.ref}") from err
        raise Busy(f"VirtualMachine {self.vm.ref} keeps changing; retry")

    async def _patch_once(
        self, vm: dict[str, Any], ops: list[dict[str, Any]], requester: Requester, attempt: _BootAttempt
    ) -> None:
        """The boot order patch, guarded by `vm`'s resourceVersion, so it can only ever apply as the
        version right after `vm`. Sent again only while it certainly never reached the API server (no
        connection) or was answered with a server error; one that may have reached it and is not
        answered is never sent again (the caller's bound ends it `unknown`)."""
        delay = 0.1
        while True:
            attempt.commit_sent = True
            attempt.late = LatePatch(requester.request_id, vm, boot.boot_settings(boot.applied(vm, ops)))
            try:
                written = await self.vm.api.request(
                    "PATCH",
                    vm_path(self.vm.namespace, self.vm.name),
                    # kube-apiserver gives up on a request it has not finished by then (queued by
                    # priority and fairness, or waiting on etcd); it narrows a late apply, not more
                    params={"timeout": f"{max(1, math.ceil(attempt.deadline - self.vm.loop.time()))}s"},
                    body=boot.guard_ops(vm) + ops,
                    content_type=JSON_PATCH,
                    retry=False,
                )
                self.restore.forget_guarded_by(vm)
                self.vm.note(written)
                attempt.commit_sent, attempt.late = False, None
                return
            except ApiError as err:
                if (err.code == 0 and err.reason != NOT_SENT) or err.code == 504:
                    raise Unanswered(  # may have been carried out: never sent again
                        f"no answer from the Kubernetes API ({err.message}); the change is not sent again, "
                        "and is undone should it still be carried out"
                    ) from err
                attempt.commit_sent, attempt.late = False, None
                if not err.retryable:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
