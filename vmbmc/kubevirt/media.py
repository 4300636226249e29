"""The BMC's virtual CD-ROM on KubeVirt and CDI: one DataVolume, one CD-ROM disk, one status entry.

Insert: a request record (InsertMediaRequested) before anything is written, the status entry
(`ImportScheduled`), the DataVolume `vmbmc-<bmc>-media` in the VM's namespace (labelled with the BMC, so
the BMC's finalizer finds it), then the CD-ROM disk and volume `vmbmc-media` patched into the VM (guarded
by uid and resourceVersion). The import is then followed by GETs of that one DataVolume (the kbmc may get,
watch and delete it by name, never list) until CDI says Succeeded (entry inserted, Event MediaInserted) or
Failed (Warning Event MediaInsertFailed with CDI's message; the disk is taken out again and the DataVolume
deleted, so the VM still starts, and the entry keeps phase Failed and the message).
Eject: a request record (EjectMediaRequested), the disk and volume out, the DataVolume deleted, the entry
cleared, Event MediaEjected. Ejecting an empty drive is a success with no call.

The VM's next start gives its VMI the new disk (KubeVirt shows RestartRequired on a running VM meanwhile);
a boot override `Cd` numbers it first, as any CD-ROM.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from vmbmc.k8s.client import ApiError
from vmbmc.kubevirt.errors import machine_error
from vmbmc.kubevirt.vm import KubeVirtVm
from vmbmc.machine import media as md
from vmbmc.machine.errors import Busy, MachineError, NotFound, Refused
from vmbmc.machine.types import Effect, Requester
from vmbmc.naming import LABEL_BMC, label_value

log = logging.getLogger(__name__)

POLL_SECONDS = 0.3  # between GETs of the DataVolume while it imports
IMPORT_LIMIT = 3600.0  # a bound on following one import; the entry then says it was given up
PATCH_RETRIES = 5


def dv_path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{md.CDI_GROUP}/{md.CDI_VERSION}/namespaces/{namespace}/datavolumes"
    return f"{base}/{name}" if name else base


class MediaDrive:
    """The one CD-ROM of one BMC. Runs on the machine's loop."""

    def __init__(self, vm: KubeVirtVm) -> None:
        self.vm = vm
        owner = vm.bmc.partition("/")[2] if vm.bmc else vm.name
        self.dv = md.data_volume_name(owner)
        self.labels = {"app.kubernetes.io/name": "vmbmc", "app.kubernetes.io/component": "virtual-media",
                       LABEL_BMC: label_value(owner)}
        self._lock = asyncio.Lock()  # one insert or eject at a time
        self._shown: md.MediaStatus | None = None  # our write before the watch shows it
        self._follow: asyncio.Task[None] | None = None

    # --- reads ------------------------------------------------------------------------------
    def status(self) -> md.MediaStatus:
        shown = self._shown if self._shown is not None else md.MediaStatus.from_entries(self.vm.store.media())
        if shown.importing and (self._follow is None or self._follow.done()) and not self._lock.locked():
            self._start_follow(None)  # a kbmc restarted mid-import picks the import up again
        return shown

    def carried_out(self, action: str) -> bool:
        """After a kbmc restart: does the VM show that a `pending` insert or eject was made?"""
        try:
            attached = md.attached(self.vm.current())
        except MachineError:
            return False
        if action == md.INSERT_ACTION:
            return attached
        return not attached and not self.status().image

    # --- insert -----------------------------------------------------------------------------
    async def insert(self, requester: Requester, image: str) -> asyncio.Future[md.MediaStatus]:
        md.check_image(image)  # Invalid at once, before any record
        if self._lock.locked():
            raise Busy("a virtual media insert or eject is in progress", retry_after=2.0)
        async with self._lock:
            now = self.status()
            if now.inserted or now.importing:
                why = f"{now.image} is inserted; eject it first"
                if now.importing:
                    why = "an image is being imported"
                await self.vm.requests.open(requester, md.INSERT_ACTION, Effect.REFUSED, what=image, note=why)
                raise Refused(why)
            await self.vm.requests.open(requester, md.INSERT_ACTION, Effect.PENDING, what=image)
            try:
                await self._write(md.MediaStatus(image, False, self.dv, md.SCHEDULED, ""))
                await self._create_dv(image)
                await self._patch(lambda vm: md.attach_ops(vm, self.dv))
            except (ApiError, MachineError) as err:
                message = err.message if isinstance(err, MachineError) else f"{err.code} {err.message}"
                await self.vm.requests.settle(requester, md.INSERT_ACTION, Effect.FAILED, message)
                await self._undo()
                await self._write(md.MediaStatus(image, False, "", md.FAILED, message))
                if isinstance(err, MachineError):
                    raise
                raise machine_error(err, f"DataVolume {self.vm.namespace}/{self.dv}") from err
            await self.vm.requests.settle(requester, md.INSERT_ACTION, Effect.CALLED)
            log.info("virtual media insert: import started",
                     extra={"vm": self.vm.ref, "datavolume": self.dv, "request_id": requester.request_id})
            return self._start_follow(requester)

    async def _create_dv(self, image: str) -> None:
        body = md.data_volume(self.dv, self.vm.namespace, image, self.labels)
        for _ in range(PATCH_RETRIES):
            if await self.vm.api.create(dv_path(self.vm.namespace), body) is not None:
                return
            try:
                there = await self.vm.api.request("GET", dv_path(self.vm.namespace, self.dv))
            except ApiError as err:
                if err.code != 404:
                    raise
                continue  # gone meanwhile: create it again
            if not there["metadata"].get("deletionTimestamp") and there.get("spec", {}).get("source") == (
                body["spec"]["source"]
            ):
                return  # this image's, made by an earlier attempt whose answer was lost: done
            await self._delete_dv()  # a leftover of an earlier insert: replace it
            await asyncio.sleep(POLL_SECONDS)
        raise Busy(f"DataVolume {self.vm.namespace}/{self.dv} is still being deleted; retry")

    async def _delete_dv(self) -> None:
        try:
            await self.vm.api.request("DELETE", dv_path(self.vm.namespace, self.dv))
        except ApiError as err:
            if err.code != 404:
                raise

    async def _patch(self, make_ops: Any) -> None:
        """A JSON Patch of the VM guarded by uid and resourceVersion, re-read and re-made on a conflict."""
        vm: dict[str, Any] | None = self.vm.current()
        for attempt in range(PATCH_RETRIES):
            if vm is None:
                raise NotFound(f"VirtualMachine {self.vm.ref} not found")
            ops = make_ops(vm)
            if not ops:
                return
            try:
                await self.vm.patch(vm, ops)
                return
            except ApiError as err:
                if err.code in (409, 422) and attempt < PATCH_RETRIES - 1:
                    vm = await self.vm.fresh()
                    continue
                raise
        raise Busy(f"VirtualMachine {self.vm.ref} keeps changing; retry")

    async def _write(self, status: md.MediaStatus) -> None:
        self._shown = status
        try:
            await self.vm.store.write_media([status.to_dict()] if status.phase or status.image else [])
        finally:
            self._shown = None

    async def _undo(self) -> None:
        """Best effort: no half-inserted medium stays behind."""
        try:
            await self._patch(md.detach_ops)
            await self._delete_dv()
        except (ApiError, MachineError) as err:
            log.warning("virtual media clean-up failed", extra={"vm": self.vm.ref, "error": str(err)})

    # --- following the import -------------------------------------------------------------------
    def _start_follow(self, requester: Requester | None) -> asyncio.Future[md.MediaStatus]:
        done: asyncio.Future[md.MediaStatus] = self.vm.future()
        self._follow = self.vm.spawn(self._watch_import(requester, done))
        return done

    async def _watch_import(self, requester: Requester | None, done: asyncio.Future[md.MediaStatus]) -> None:
        current = md.MediaStatus.from_entries(self.vm.store.media())
        image = current.image
        deadline = time.monotonic() + IMPORT_LIMIT
        last = (current.phase, current.message)
        try:
            while True:
                try:
                    dv = await self.vm.api.request("GET", dv_path(self.vm.namespace, self.dv))
                except ApiError as err:
                    if err.code != 404:
                        await asyncio.sleep(POLL_SECONDS * 3)
                        continue
                    dv = None
                phase, message = md.import_state(dv)
                if time.monotonic() > deadline and phase not in (md.SUCCEEDED, md.FAILED):
                    phase, message = md.FAILED, f"the import did not finish within {IMPORT_LIMIT:.0f} s"
                if phase == md.SUCCEEDED:
                    final = md.MediaStatus(image, True, self.dv, md.SUCCEEDED, "")
                    await self._write(final)
                    where = f"DataVolume {self.vm.namespace}/{self.dv}"
                    await self._event("Normal", md.INSERTED_REASON,
                                      f"{image} inserted ({where} imported); VM sees it at next start",
                                      requester)
                    done.set_result(final)
                    return
                if phase == md.FAILED:
                    async with self._lock:
                        await self._undo()
                        final = md.MediaStatus(image, False, "", md.FAILED, message)
                        await self._write(final)
                    where = f"DataVolume {self.vm.namespace}/{self.dv}"
                    await self._event("Warning", md.FAILED_REASON,
                                      f"importing {image} into {where} failed: {message}", requester)
                    done.set_result(final)
                    return
                if (phase, message) != last:
                    last = (phase, message)
                    await self._write(md.MediaStatus(image, False, self.dv, phase, message))
                await asyncio.sleep(POLL_SECONDS)
        except (ApiError, MachineError) as err:
            log.warning("following the virtual media import failed",
                        extra={"vm": self.vm.ref, "error": str(err)})
            if not done.done():
                done.set_exception(err if isinstance(err, MachineError) else Busy(str(err)))
        except asyncio.CancelledError:  # ejected (or the kbmc stops) before the import ended
            if not done.done():
                done.set_result(md.MediaStatus(image, False, "", md.FAILED, "ejected before it was imported"))
            raise

    async def _event(self, type_: str, reason: str, message: str, requester: Requester | None) -> None:
        rid = requester.request_id if requester is not None else "resumed"
        await self.vm.requests.events.emit(
            self.vm.store.involved_object(), type_, reason,
            f"{message}{f' (request {rid})' if requester is not None else ''}",
            f"{self.vm.ref}/{rid}/{reason}", action=reason,
        )

    # --- eject ------------------------------------------------------------------------------------
    async def eject(self, requester: Requester) -> md.MediaStatus:
        if self._lock.locked():
            raise Busy("a virtual media insert or eject is in progress", retry_after=2.0)
        async with self._lock:
            now = self.status()
            if not now.image and not md.attached(self.vm.current()):
                await self.vm.requests.open(requester, md.EJECT_ACTION, Effect.NONE, note="no media inserted")
                return now
            if self._follow is not None and not self._follow.done():
                self._follow.cancel()
            await self.vm.requests.open(requester, md.EJECT_ACTION, Effect.PENDING, what=now.image)
            try:
                await self._patch(md.detach_ops)
                await self._delete_dv()
                await self._write(md.MediaStatus())
            except (ApiError, MachineError) as err:
                message = err.message if isinstance(err, MachineError) else f"{err.code} {err.message}"
                await self.vm.requests.settle(requester, md.EJECT_ACTION, Effect.FAILED, message)
                if isinstance(err, MachineError):
                    raise
                raise machine_error(err, f"VirtualMachine {self.vm.ref}") from err
            await self.vm.requests.settle(requester, md.EJECT_ACTION, Effect.CALLED)
            where = f"DataVolume {self.vm.namespace}/{self.dv}"
            await self._event("Normal", md.EJECTED_REASON,
                              f"{now.image or 'the medium'} ejected; {where} deleted", requester)
            return md.MediaStatus()

