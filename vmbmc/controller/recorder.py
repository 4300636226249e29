"""Writes the power history of each BMC: Events, `status.powerHistory`, `powerState` and two conditions.

One `PowerRecorder` per controller process. `observe()` is called on every change of a BMC, its VM or its
VMI; the pure `vmbmc.controller.transitions` decides what happened, this module writes it, exactly once:

1. Events first, with names derived from the transition id: `<bmc>.<id>` on the BMC and `<vm>.<vm id>`
   on the VM (the VM's id is salted, see transitions.vm_transition_id): a 409 on create means an earlier
   attempt, an earlier controller or another BMC of the same VM already wrote it, so the VM gets one
   Event per transition however many BMCs serve it.
2. Then the status (merge patch on the status subresource, guarded by resourceVersion, re-read on 409),
   adding only history entries whose id (or alias) is not there yet.
3. Last, the marker annotation `vmbmc.kubevirt.io/last-observed`: the last settled state and the VMI it
   refers to, so a restarted controller knows what it saw before (KubeVirt keeps no trace of a VMI that is
   gone). A crash between the steps repeats them on the next observation; steps 1 and 2 find their work
   done. The prefix is the one kopf's storages use, so kopf's diff ignores the annotation.

Two API clients, so that a transition is recorded promptly while the controller works off a burst of new
BMCs: `api` carries every observation that records a transition or concerns a BMC this process has
observed before; `bulk` (the controller's own client, shared with reconciles) carries a BMC's first
observation that records nothing, i.e. setting a new BMC's initial state, itself part of the burst. A
status write that would repeat what this process last wrote for the BMC is skipped (as the marker's is):
the copy the caller passes often predates that write, and a guarded write from it would cost a 409 and a
read for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Iterable
from typing import Any

from vmbmc.controller import attribution
from vmbmc.controller import transitions as tr
from vmbmc.controller.conditions import condition, merge
from vmbmc.k8s import clock
from vmbmc.k8s.client import MERGE_PATCH, ApiClient, ApiError
from vmbmc.k8s.events import create_event, event_body, involved
from vmbmc.k8s.status import guarded_patch
from vmbmc.machine import requests as rq
from vmbmc.naming import API_VERSION, KIND, bmc_path, vm_path, vm_ref

log = logging.getLogger(__name__)

COMPONENT = "vmbmc-controller"
MARKER_ANNOTATION = "vmbmc.kubevirt.io/last-observed"
MAX_HISTORY = 20
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # after a failed observation; the last one repeats

Key = tuple[str, str]


class PowerRecorder:
    def __init__(self, api: ApiClient, instance: str, *, bulk: ApiClient | None = None) -> None:
        self.api = api
        self.bulk = bulk or api  # a BMC's first observation that records nothing (see above)
        self.instance = instance  # reportingInstance: the controller's pod name
        self._peers: dict[Key, tuple[Key, ...]] = {}  # the other BMCs of each BMC's VM, as last told
        self._locks: dict[Key, asyncio.Lock] = {}
        # What was last seen per BMC, with the BMC's UID (a BMC deleted and created again starts afresh).
        self._memory: dict[Key, tuple[str, tr.Memory | None]] = {}
        self._markers: dict[Key, str] = {}  # the marker we last wrote
        self._written: dict[Key, tuple[Any, ...]] = {}  # what our last status write left (status_signature)
        self._retries: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- interface -------------------------------------------------------------------------------
    async def observe(
        self,
        bmc: dict[str, Any],
        vm: dict[str, Any] | None,
        vmi: dict[str, Any] | None,
        peers: Iterable[Key] | None = None,
    ) -> None:
        """Record what changed since the last observation of this BMC. Idempotent; never raises: on an
        error it logs and observes again later (with fresh objects).

        `peers`: the BMCs (namespace, name) that serve the same VM (the controller's index; this one may be
        among them), whose requests take part in attribution; None keeps the ones last given."""
        meta = bmc.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if peers is not None:
            self._peers[key] = tuple(p for p in dict.fromkeys(peers) if p != key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            self._cancel_retry(key)
            try:
                await self._observe(key, bmc, vm, vmi)
            except Exception as err:  # never raise into the caller's handler: retry on our own
                attempt = self._failures.get(key, 0)
                self._failures[key] = attempt + 1
                log.warning(
                    "could not record the power history; retrying",
                    extra={"bmc": f"{key[0]}/{key[1]}", "error": str(err), "attempt": attempt + 1},
                    exc_info=not isinstance(err, ApiError),
                )
                if key in self._locks:  # not forgotten meanwhile
                    self._schedule_retry(key, RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            else:
                self._failures.pop(key, None)

    def forget(self, bmc_namespace: str, bmc_name: str) -> None:
        """The BMC is gone: drop what we remember of it."""
        key = (bmc_namespace, bmc_name)
        self._cancel_retry(key)
        self._memory.pop(key, None)
        self._peers.pop(key, None)
        self._markers.pop(key, None)
        self._written.pop(key, None)
        self._failures.pop(key, None)
        self._locks.pop(key, None)

    async def close(self) -> None:
        """Stop pending retries (for a clean shutdown and for tests)."""
        for key in list(self._retries):
            self._cancel_retry(key)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- one observation -------------------------------------------------------------------------
    async def _observe(
        self, key: Key, bmc: dict[str, Any], vm: dict[str, Any] | None, vmi: dict[str, Any] | None
    ) -> None:
        uid = str((bmc.get("metadata") or {}).get("uid") or "")
        seen_at = clock.now()
        now = clock.rfc3339(seen_at)
        observed = tr.observe(vm, vmi)
        remembered = self._memory.get(key)
        known = remembered is not None and remembered[0] == uid
        if remembered is not None and known:
            memory = remembered[1]
        else:
            memory = tr.Memory.from_json(_annotations(bmc).get(MARKER_ANNOTATION))
        new_memory, found = tr.step(memory, observed, now)
        api = self.api if found or known else self.bulk
        requests: list[dict[str, Any]] = []
        if found:
            # The caller's copy of the BMC may lag (an index or a watch of another resource than the one
            # that changed): read it again, so the kbmc's newest request records take part in attribution
            # and the history check sees what is stored. Likewise every other BMC of the VM.
            fresh = await self._get(bmc_path(key[0], key[1]))
            if fresh is None or str(fresh["metadata"].get("uid") or "") != uid:
                return  # deleted (or replaced): forget() follows
            bmc = fresh
            requests = await self._requests(bmc)
        status = bmc.get("status") or {}
        history = list(status.get("powerHistory") or [])
        found = tr.unrecorded(found, history)
        own = f"{key[0]}/{key[1]}"
        attributed = attribution.attribute(found, requests, history, own)
        entries = [entry for entry, _ in attributed]
        for transition, (entry, req) in zip(found, attributed, strict=True):
            message = attribution.vm_message(entry, req, own)
            await self._emit(bmc, vm, transition, entry, message, seen_at, req)
        if found or self._written.get(key) != status_signature(bmc, observed):
            await self._write_status(api, key, bmc, observed, found, entries, now)
        if new_memory is not None:
            await self._write_marker(api, key, bmc, new_memory)
        self._memory[key] = (uid, new_memory)
        for transition, entry in zip(found, entries, strict=True):
            log.info(
                "power transition recorded",
                extra={
                    "bmc": own,
                    "reason": transition.reason,
                    "id": transition.id,
                    "from": transition.from_state,
                    "to": transition.to_state,
                    "cause": entry["cause"],
                    "request_id": entry.get("requestId"),
                },
            )

    async def _requests(self, bmc: dict[str, Any]) -> list[dict[str, Any]]:
        """The request records of every BMC of this BMC's VM (its own first), each tagged with its BMC."""
        meta = bmc["metadata"]
        vm_key = vm_ref(bmc)
        holders = [bmc]
        for peer in self._peers.get((meta["namespace"], meta["name"]), ()):
            other = await self._get(bmc_path(*peer))
            if other is not None and vm_ref(other) == vm_key:  # the index may lag a re-pointed BMC
                holders.append(other)
        out = []
        for holder in holders:
            tag = f"{holder['metadata']['namespace']}/{holder['metadata']['name']}"
            requests = (holder.get("status") or {}).get("requests") or []
            out += [{**r, attribution.BMC_KEY: tag} for r in requests]
        return out

    # --- Events ----------------------------------------------------------------------------------
    async def _emit(
        self,
        bmc: dict[str, Any],
        vm: dict[str, Any] | None,
        t: tr.Transition,
        entry: dict[str, Any],
        vm_message: str,
        seen_at: datetime.datetime,
        req: dict[str, Any] | None,
    ) -> None:
        """The transition's Events, on the BMC and on the VM. `seen_at` (eventTime) is when the controller
        saw it: after the request that caused it (`req`) was recorded, so kubectl lists the request first;
        the Event's lastTimestamp also comes after any second the request's Event may hold."""
        after = rq.event_last(req) if req is not None else ""
        on_bmc = involved(bmc, API_VERSION, KIND)
        await self._create_event(f"{on_bmc['name']}.{t.id}", on_bmc, t, entry["message"], seen_at, after)
        if vm is not None:
            on_vm = involved(vm, "kubevirt.io/v1", "VirtualMachine")
            await self._create_event(f"{on_vm['name']}.{t.vm_id}", on_vm, t, vm_message, seen_at, after)

    async def _create_event(
        self,
        name: str,
        about: dict[str, Any],
        t: tr.Transition,
        message: str,
        seen_at: datetime.datetime,
        after: str,
    ) -> None:
        body = event_body(
            name=name,
            about=about,
            type_="Warning" if t.warning else "Normal",
            reason=t.reason,
            message=message,
            action=t.reason,
            component=COMPONENT,
            instance=self.instance,
            recorded=t.time,
            at=seen_at,
            effect=True,
            after=after,
        )
        await create_event(self.api, body)  # False (409): written before, by us or another BMC's recorder

    # --- status ----------------------------------------------------------------------------------
    async def _write_status(
        self,
        api: ApiClient,
        key: Key,
        bmc: dict[str, Any],
        observed: tr.Observed,
        found: list[tr.Transition],
        entries: list[dict[str, Any]],
        now: str,
    ) -> None:
        meta = bmc["metadata"]

        def make_patch(obj: dict[str, Any]) -> dict[str, Any] | None:
            status = status_patch(obj, observed, found, entries, now)
            return None if status is None else {"status": status}

        # None (404): the BMC is gone; forget() follows.
        written = await guarded_patch(
            api, bmc_path(meta["namespace"], meta["name"]), make_patch, subresource="status", current=bmc
        )
        if written is not None:
            self._written[key] = status_signature(written, observed)

    async def _write_marker(self, api: ApiClient, key: Key, bmc: dict[str, Any], memory: tr.Memory) -> None:
        value = memory.to_json()
        if value in (_annotations(bmc).get(MARKER_ANNOTATION), self._markers.get(key)):
            return
        meta = bmc["metadata"]
        body = {"metadata": {"annotations": {MARKER_ANNOTATION: value}}}
        try:
            await api.request(
                "PATCH", bmc_path(meta["namespace"], meta["name"]), body=body, content_type=MERGE_PATCH
            )
        except ApiError as err:
            if err.code != 404:
                raise
        self._markers[key] = value

    # --- retries ---------------------------------------------------------------------------------
    def _schedule_retry(self, key: Key, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def start() -> None:
            self._retries.pop(key, None)
            task = loop.create_task(self._retry(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._retries[key] = loop.call_later(delay, start)

    def _cancel_retry(self, key: Key) -> None:
        handle = self._retries.pop(key, None)
        if handle is not None:
            handle.cancel()

    async def _retry(self, key: Key) -> None:
        """Observe again with fresh objects: the ones of the failed call may be stale by now."""
        try:
            bmc = await self._get(bmc_path(*key))
            if bmc is None:
                self.forget(*key)
                return
            ref = vm_ref(bmc)
            vm = await self._get(vm_path(*ref)) if ref[1] else None
            vmi = await self._get(vm_path(ref[0], ref[1], "virtualmachineinstances")) if ref[1] else None
        except ApiError as err:
            attempt = self._failures.get(key, 0)
            self._failures[key] = attempt + 1
            log.warning("could not read the BMC for a retry", extra={"bmc": "/".join(key), "error": str(err)})
            if key in self._locks:
                self._schedule_retry(key, RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            return
        await self.observe(bmc, vm, vmi)

    async def _get(self, path: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await self.api.request("GET", path)
        except ApiError as err:
            if err.code == 404:
                return None
            raise
        return obj


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def status_signature(obj: dict[str, Any], observed: tr.Observed) -> tuple[Any, ...]:
    """What `status_patch` makes of `obj` when it records no transition: the same signature, the same
    fields written."""
    meta = obj.get("metadata") or {}
    return (
        meta.get("uid"),
        meta.get("generation"),
        observed.state,
        tr.powered_on_condition(observed.state),
        tr.boot_override_pending(obj, observed.vmi),
    )


def status_patch(
    obj: dict[str, Any],
    observed: tr.Observed,
    found: list[tr.Transition],
    entries: list[dict[str, Any]],
    now: str,
) -> dict[str, Any] | None:
    """The merge patch of `status` that records `entries` and the current state in `obj`; None when `obj`
    already shows all of it. Only our fields: powerState, powerHistory, the PoweredOn and
    BootOverridePending conditions (the list is replaced whole, so the others are copied as they are)."""
    status = obj.get("status") or {}
    history = list(status.get("powerHistory") or [])
    fresh = tr.unrecorded(found, history)  # another writer may have recorded some meanwhile
    fresh_ids = {t.id for t in fresh}
    new_entries = [e for e in entries if e["id"] in fresh_ids]
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    old_conditions = list(status.get("conditions") or [])
    conditions = merge(
        old_conditions,
        [
            condition("PoweredOn", *tr.powered_on_condition(observed.state)),
            condition("BootOverridePending", *tr.boot_override_pending(obj, observed.vmi)),
        ],
        now,
        generation,
    )
    patch: dict[str, Any] = {}
    if status.get("powerState") != observed.state:
        patch["powerState"] = observed.state
    if new_entries:
        patch["powerHistory"] = (history + new_entries)[-MAX_HISTORY:]
    if conditions != old_conditions:
        patch["conditions"] = conditions
    return patch or None
