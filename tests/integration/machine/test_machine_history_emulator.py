"""The back end's history source against the emulator: the view from the BMC's status, listeners of its
changes, the log clear as a recorded request, and a clear a killed kbmc left pending."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from machine_cluster import Cluster, unique, wait_for

from tests.history_entries import HISTORY
from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.machine import BackendUnavailable, Machine, Protocol, Requester
from vmbmc.machine.history import LogView, Origin, Reason
from vmbmc_devcluster.emulator.harness import EmulatorThread


@asynccontextmanager
async def served(
    emu: EmulatorThread, cluster: Cluster, status: dict | None = None
) -> AsyncIterator[tuple[str, Machine]]:
    """A new VM and BMC (its status as given, before the machine starts) and the BMC's Machine."""
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    if status:
        cluster.patch_bmc_status(name + "-bmc", status)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        yield name + "-bmc", await hub.machine_for_bmc("default", name + "-bmc")
    finally:
        await hub.close()


async def test_view_listeners_and_a_clear(emu: EmulatorThread, cluster: Cluster) -> None:
    async with served(emu, cluster) as (bmc, m):
        assert m.history() == LogView()
        heard: list[LogView] = []
        stop = m.watch_history(heard.append)
        cluster.patch_bmc_status(bmc, {"powerHistory": HISTORY})  # as the controller writes it
        await wait_for(lambda: heard and len(heard[-1].entries) == 4, what="the listener hears the history")
        assert m.history() is m.history()  # one view per version of the BMC: the SEL reads it per entry
        assert [e.id for e in m.history().entries] == [h["id"] for h in HISTORY]

        who = Requester(Protocol.IPMI, "admin", "10.0.0.7", "c1ea7000000000aa")
        future = m.clear_log(who)
        assert m.clear_log(who) is future  # one request id, one clear
        entry = await future
        assert (entry.reason, entry.origin, entry.id) == (Reason.LOG_CLEARED, Origin.IPMI, who.request_id)
        assert entry.message == "by IPMI user admin from 10.0.0.7 (request c1ea7000000000aa)"
        await wait_for(lambda: m.history().cleared == entry, what="the clear in the view")
        assert m.history().entries == (entry,)  # everything recorded before it is hidden
        await wait_for(lambda: heard[-1].entries == (entry,), what="the listener hears the clear")
        status = (cluster.bmc(bmc) or {})["status"]
        assert status["logClearedAt"] == {
            "time": status["logClearedAt"]["time"], "requestId": who.request_id,
            "requester": "IPMI user admin from 10.0.0.7",
        }
        (record,) = [r for r in status["requests"] if r["id"] == who.request_id]
        assert (record["action"], record["effect"]) == ("clear_log", "called")
        reasons = [e["reason"] for e in cluster.events_for(bmc)]
        assert reasons.count("ClearLogRequested") == 1 and reasons.count("LogCleared") == 1

        stop()
        count = len(heard)
        cluster.patch_bmc_status(bmc, {"powerHistory": HISTORY[:1]})
        await wait_for(lambda: len(m.history().entries) == 1, what="the change read")  # still the clear only
        assert len(heard) == count  # a stopped listener hears nothing more


async def test_a_clear_that_cannot_be_stored_fails(emu: EmulatorThread, cluster: Cluster) -> None:
    async with served(emu, cluster) as (bmc, m):
        emu.call(emu.emulator.store.delete, cluster.bmcs, "default", bmc)
        await wait_for(lambda: m.history() == LogView(), what="the BMC gone from the cache")
        with pytest.raises(BackendUnavailable, match="could not be stored"):
            await m.clear_log(Requester(Protocol.REDFISH, "admin", "10.0.0.8", "gone"))


async def test_a_restarted_kbmc_settles_the_clears_it_left(emu: EmulatorThread, cluster: Cluster) -> None:
    """A kbmc killed mid-clear: the record it left says pending. The next one settles it by what
    `logClearedAt` shows: called when the clear was stored, else failed."""
    ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=30)  # older than the call bound
    old = ago.strftime("%Y-%m-%dT%H:%M:%SZ")
    pending = {"time": old, "protocol": "ipmi", "action": "clear_log", "user": "admin", "client": "10.0.0.7",
               "effect": "pending"}
    status = {
        "requests": [{**pending, "id": "stored"}, {**pending, "id": "lost"}],
        "logClearedAt": {"time": old, "requestId": "stored", "requester": "IPMI user admin from 10.0.0.7"},
    }
    async with served(emu, cluster, status) as (bmc, _):

        def effects() -> dict[str, str]:
            return {r["id"]: r["effect"] for r in (cluster.bmc(bmc) or {})["status"]["requests"]}

        await wait_for(lambda: effects() == {"stored": "called", "lost": "failed"}, what="both settled")
