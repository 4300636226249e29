"""The back end's history source against the emulator: the view from the BMC's status, listeners of its
changes, the log clear as a recorded request, and a clear a killed kbmc left pending."""

from __future__ import annotations

import datetime
import json

import pytest
from machine_cluster import Cluster, unique, wait_for

from tests.history_entries import HISTORY
from vmbmc.emulator.harness import EmulatorThread
from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.machine import BackendUnavailable, Protocol, Requester
from vmbmc.machine.history import LogView, Origin, Reason

MERGE = "application/merge-patch+json"


def write_status(emu: EmulatorThread, cluster: Cluster, bmc: str, status: dict) -> None:
    body = json.dumps({"status": status})
    emu.call(emu.emulator.store.patch, cluster.bmcs, "default", bmc, MERGE, body, subresource="status")


async def test_view_listeners_and_a_clear(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_bmc("default", name + "-bmc")
        assert m.history() == LogView()
        heard: list[LogView] = []
        stop = m.watch_history(heard.append)
        write_status(emu, cluster, name + "-bmc", {"powerHistory": HISTORY})  # as the controller writes it
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
        status = (cluster.bmc(name + "-bmc") or {})["status"]
        assert status["logClearedAt"] == {
            "time": status["logClearedAt"]["time"], "requestId": who.request_id,
            "requester": "IPMI user admin from 10.0.0.7",
        }
        (record,) = [r for r in status["requests"] if r["id"] == who.request_id]
        assert (record["action"], record["effect"]) == ("clear_log", "called")
        reasons = [e["reason"] for e in cluster.events_for(name + "-bmc")]
        assert reasons.count("ClearLogRequested") == 1 and reasons.count("LogCleared") == 1

        stop()
        count = len(heard)
        write_status(emu, cluster, name + "-bmc", {"powerHistory": HISTORY[:1]})
        await wait_for(lambda: len(m.history().entries) == 1, what="the change read")  # still the clear only
        assert len(heard) == count  # a stopped listener hears nothing more
    finally:
        await hub.close()


async def test_a_clear_that_cannot_be_stored_fails(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_bmc("default", name + "-bmc")
        emu.call(emu.emulator.store.delete, cluster.bmcs, "default", name + "-bmc")
        await wait_for(lambda: m.history() == LogView(), what="the BMC gone from the cache")
        with pytest.raises(BackendUnavailable, match="could not be stored"):
            await m.clear_log(Requester(Protocol.REDFISH, "admin", "10.0.0.8", "gone"))
    finally:
        await hub.close()


async def test_a_restarted_kbmc_settles_the_clears_it_left(emu: EmulatorThread, cluster: Cluster) -> None:
    """A kbmc killed mid-clear: the record it left says pending. The next one settles it by what
    `logClearedAt` shows: called when the clear was stored, else failed."""
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=30)  # older than the call bound
    old = ago.strftime("%Y-%m-%dT%H:%M:%SZ")
    pending = {"time": old, "protocol": "ipmi", "action": "clear_log", "user": "admin", "client": "10.0.0.7",
               "effect": "pending"}
    write_status(emu, cluster, name + "-bmc", {
        "requests": [{**pending, "id": "stored"}, {**pending, "id": "lost"}],
        "logClearedAt": {"time": old, "requestId": "stored", "requester": "IPMI user admin from 10.0.0.7"},
    })
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        await hub.machine_for_bmc("default", name + "-bmc")

        def effects() -> dict[str, str]:
            return {r["id"]: r["effect"] for r in (cluster.bmc(name + "-bmc") or {})["status"]["requests"]}

        await wait_for(lambda: effects() == {"stored": "called", "lost": "failed"}, what="both settled")
    finally:
        await hub.close()
