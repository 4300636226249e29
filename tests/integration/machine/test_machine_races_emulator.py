"""Duplicates, concurrent front ends, busy transitions, external changes, deletion and API failures."""

from __future__ import annotations

import asyncio
import itertools
import re

import pytest
from machine_cluster import Cluster, unique, wait_for

from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.machine import (
    ActionResult,
    BackendUnavailable,
    Busy,
    Effect,
    Forbidden,
    Machine,
    MachineError,
    NotFound,
    PowerAction,
    PowerState,
    Protocol,
    Requester,
)
from vmbmc_devcluster.emulator.harness import EmulatorThread

_ids = itertools.count(1)


def req(protocol: Protocol = Protocol.IPMI, request_id: str | None = None) -> Requester:
    return Requester(protocol, "admin", "10.0.0.9", request_id or f"race-{next(_ids)}")


async def power_on(m: Machine) -> None:
    await m.act(PowerAction.ON, req())
    await wait_for(lambda: m.power_status().state is PowerState.ON, what="On")


def state_is(m: Machine, state: PowerState) -> bool:
    return m.power_status().state is state


async def test_retransmit_is_one_request(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_bmc("default", name + "-bmc")
        first = m.submit(PowerAction.ON, req(request_id="seq-1"))
        again = m.submit(PowerAction.ON, req(request_id="seq-1"))  # an IPMI retransmit
        assert first == again and first.effect is Effect.PENDING
        # another request a second later sees the transition it started: nothing twice
        other = m.submit(PowerAction.ON, req())
        assert other.effect is Effect.NONE
        await wait_for(lambda: state_is(m, PowerState.ON), what="On")
        await wait_for(
            lambda: (
                [r["effect"] for r in cluster.bmc(name + "-bmc")["status"].get("requests", [])]
                == ["called", "none"]
            ),
            what="two records: one call, one no-op",
        )
        ons = [e for e in cluster.events_for(name + "-bmc") if e["reason"] == "PowerOnRequested"]
        assert len(ons) == 2
        first_event = next(e for e in ons if "seq-1" in e["message"])
        assert "IPMI user admin from 10.0.0.9" in first_event["message"]
        assert first_event["involvedObject"]["kind"] == "VirtualMachineBMC"
        assert first_event["involvedObject"]["uid"] == cluster.bmc(name + "-bmc")["metadata"]["uid"]
        assert first_event["reportingComponent"] == "vmbmc-kbmc" and first_event["count"] == 1
        # A request's Event: the second it was made in, and eventTime in microseconds.
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first_event["eventTime"])
        assert first_event["eventTime"] >= first_event["firstTimestamp"][:-1]
        assert first_event["firstTimestamp"] == first_event["lastTimestamp"]
        assert first_event["action"] == "PowerOnRequested" and first_event["reportingInstance"]
        # What was asked and what KubeVirt is asked to do: still true once the call is answered.
        assert first_event["message"].endswith(": KubeVirt call VirtualMachine start")
    finally:
        emu.emulator.faults.clear()
        await hub.close()


async def test_eight_front_ends_at_once(emu: EmulatorThread, cluster: Cluster) -> None:
    """Eight requests in one turn of the loop (eight IPMI datagrams read at once): one call."""
    name = unique()
    cluster.create_vm(name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_vm("default", name)
        results: list[ActionResult] = []
        gate = asyncio.Event()

        async def front_end() -> None:
            await gate.wait()
            results.append(m.submit(PowerAction.ON, req()))

        waiting = [asyncio.ensure_future(front_end()) for _ in range(8)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*waiting)
        assert sorted(r.effect for r in results) == [Effect.NONE] * 7 + [Effect.PENDING]
        await wait_for(lambda: state_is(m, PowerState.ON), what="On")
    finally:
        emu.emulator.faults.clear()
        await hub.close()


async def test_two_processes_on_one_vm(emu: EmulatorThread, cluster: Cluster) -> None:
    """IPMI in one kbmc, Redfish in another: both ask to power on at the same moment."""
    name = unique()
    cluster.create_vm(name)
    hubs = [await KubeVirtHub.connect(emu.kubeconfig) for _ in range(2)]
    try:
        a = await hubs[0].machine_for_vm("default", name)
        b = await hubs[1].machine_for_vm("default", name)
        ra, rb = await asyncio.gather(
            a.act(PowerAction.ON, req(Protocol.IPMI)), b.act(PowerAction.ON, req(Protocol.REDFISH))
        )
        assert {ra.effect, rb.effect} <= {Effect.CALLED, Effect.NONE}
        assert Effect.CALLED in (ra.effect, rb.effect)
        await wait_for(lambda: state_is(a, PowerState.ON) and state_is(b, PowerState.ON), what="both see On")
        uid = a.power_status().vmi_uid
        assert uid == b.power_status().vmi_uid
        results = await asyncio.gather(
            a.act(PowerAction.OFF, req(Protocol.IPMI)),
            b.act(PowerAction.SHUTDOWN, req(Protocol.REDFISH)),
            return_exceptions=True,
        )
        assert all(isinstance(r, ActionResult) for r in results), results
        await wait_for(
            lambda: state_is(a, PowerState.OFF) and state_is(b, PowerState.OFF), what="both see Off"
        )
    finally:
        for hub in hubs:
            await hub.close()


async def test_busy_while_stopping_then_redfish_waits(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    emu.call(emu.kubevirt.set_delays, stop=1.0)
    try:
        m = await hub.machine_for_vm("default", name)
        await power_on(m)
        assert (await m.act(PowerAction.SHUTDOWN, req(Protocol.REDFISH))).effect is Effect.CALLED
        assert m.power_status().state is PowerState.POWERING_OFF
        with pytest.raises(Busy):
            m.submit(PowerAction.ON, req(Protocol.IPMI))  # IPMI: C0h at once
        assert m.submit(PowerAction.OFF, req()).effect is Effect.NONE  # already being carried out
        started = asyncio.get_running_loop().time()
        result = await m.act(PowerAction.ON, req(Protocol.REDFISH), settle_timeout=10)  # Redfish: waits, acts
        assert result.effect is Effect.CALLED
        assert asyncio.get_running_loop().time() - started > 0.2
        await wait_for(lambda: state_is(m, PowerState.ON), what="On after the wait")
        assert (await m.act(PowerAction.SHUTDOWN, req())).effect is Effect.CALLED
        with pytest.raises(Busy):  # still stopping after the wait: 503 + Retry-After for Redfish
            await m.act(PowerAction.ON, req(Protocol.REDFISH), settle_timeout=0.1)
    finally:
        emu.call(emu.kubevirt.set_delays, stop=0.1)
        await hub.close()


async def test_external_changes_show_in_the_observed_state(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_vm("default", name)
        assert cluster.virtctl(name, "start") == 202
        await wait_for(
            lambda: state_is(m, PowerState.POWERING_ON) or state_is(m, PowerState.ON), what="starting"
        )
        await wait_for(lambda: state_is(m, PowerState.ON), what="On by virtctl")
        assert cluster.virtctl(name, "pause") == 200
        await wait_for(lambda: state_is(m, PowerState.PAUSED), what="Paused by virtctl")
        assert cluster.virtctl(name, "unpause") == 200
        await wait_for(lambda: state_is(m, PowerState.ON), what="unpaused")
        assert cluster.virtctl(name, "stop") == 202
        await wait_for(lambda: state_is(m, PowerState.OFF), what="Off by virtctl")
        assert m.power_status().vmi_uid == ""
    finally:
        emu.emulator.faults.clear()
        await hub.close()


async def test_vm_deleted_mid_action(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_bmc("default", name + "-bmc")
        # the VM goes between the decision (from the cache) and the KubeVirt call
        emu.emulator.faults.add("PUT", rf"/virtualmachines/{name}/start$", delay=0.3, count=1)
        pending = m.submit(PowerAction.ON, req())
        assert pending.effect is Effect.PENDING
        cluster.delete_vm(name)
        with pytest.raises(NotFound):
            await m.act(PowerAction.ON, req(request_id=pending.request_id))
        await wait_for(lambda: _raises(m, NotFound), what="NotFound from the cache")
        with pytest.raises(NotFound):
            m.submit(PowerAction.OFF, req())
        failed = [e for e in cluster.events_for(name + "-bmc") if e["reason"] == "PowerActionFailed"]
        assert len(failed) == 1 and failed[0]["type"] == "Warning" and "not found" in failed[0]["message"]
    finally:
        emu.emulator.faults.clear()
        await hub.close()


def _raises(m: Machine, err: type[MachineError]) -> bool:
    try:
        m.power_status()
    except err:
        return True
    return False


@pytest.mark.parametrize(("status", "error"), [(503, BackendUnavailable), (403, Forbidden)])
async def test_api_failures_then_recovery(
    emu: EmulatorThread, cluster: Cluster, status: int, error: type[MachineError]
) -> None:
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_bmc("default", name + "-bmc")
        emu.emulator.faults.add("PUT", rf"/virtualmachines/{name}/start$", status=status)
        with pytest.raises(error):
            await m.act(PowerAction.ON, req(Protocol.REDFISH), settle_timeout=1)
        assert m.power_status().state is PowerState.OFF  # the overlay went with the failure
        records = cluster.bmc(name + "-bmc")["status"]["requests"]
        assert records[-1]["effect"] == "failed"
        emu.emulator.faults.clear()
        assert (await m.act(PowerAction.ON, req(Protocol.REDFISH))).effect is Effect.CALLED
        await wait_for(lambda: state_is(m, PowerState.ON), what="On after recovery")
    finally:
        emu.emulator.faults.clear()
        await hub.close()


async def test_kubevirt_conflict_is_verified(emu: EmulatorThread, cluster: Cluster) -> None:
    """A 409 from KubeVirt is re-read: busy (then retried by act), never parsed."""
    name = unique()
    cluster.create_vm(name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_vm("default", name)
        emu.call(emu.kubevirt.fail_next, "start", 409)
        submitted = m.submit(PowerAction.ON, req(Protocol.IPMI, "conflict-1"))
        assert submitted.effect is Effect.PENDING
        await wait_for(lambda: state_is(m, PowerState.OFF), what="overlay dropped after the refusal")
        emu.call(emu.kubevirt.fail_next, "start", 409)
        result = await m.act(
            PowerAction.ON, req(Protocol.REDFISH), settle_timeout=5
        )  # retried within the wait
        assert result.effect is Effect.CALLED
        await wait_for(lambda: state_is(m, PowerState.ON), what="On")
        # KubeVirt keeps refusing while the VM stays On: Busy once the wait is over, and not a call storm
        rule = emu.emulator.faults.add("PUT", rf"/virtualmachines/{name}/stop$", status=409, count=100)
        with pytest.raises(Busy):
            await m.act(PowerAction.OFF, req(), settle_timeout=1.0)
        assert 2 <= 100 - (rule.count or 0) <= 4  # calls backed off (0.2 s, 0.4 s, ...) within the second
        emu.emulator.faults.clear()
        assert (await m.act(PowerAction.OFF, req(), settle_timeout=5)).effect is Effect.CALLED
    finally:
        emu.emulator.faults.clear()
        await hub.close()


async def test_many_machines_share_one_watch_per_namespace(emu: EmulatorThread, cluster: Cluster) -> None:
    names = [unique() for _ in range(5)]
    for n in names:
        cluster.create_vm(n)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        machines = [await hub.machine_for_vm("default", n) for n in names]
        paths = sorted(inf.path.rsplit("/", 1)[-1] for inf in hub._informers.values())
        assert paths == ["virtualmachineinstances", "virtualmachines"]
        await machines[0].act(PowerAction.ON, req())
        await wait_for(lambda: state_is(machines[0], PowerState.ON), what="On")
        inv = machines[0].inventory()
        assert inv.nics[0].mac  # assigned by KubeVirt, read from the VMI
        assert (inv.cpus, inv.memory_bytes, inv.uuid) == (2, 1 << 30, inv.uuid) and inv.uuid
        assert all(state_is(m, PowerState.OFF) for m in machines[1:])
        for m in machines:
            await hub.release(m)
        assert hub._informers == {}
    finally:
        await hub.close()


async def test_forbidden_list_fails_at_once(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        emu.emulator.faults.add("GET", r"/virtualmachinebmcs$", status=403, count=1)
        started = asyncio.get_running_loop().time()
        with pytest.raises(Forbidden):
            await hub.machine_for_bmc("default", name + "-bmc")
        assert asyncio.get_running_loop().time() - started < 2
        assert hub._informers == {}
        m = await hub.machine_for_bmc("default", name + "-bmc")  # allowed again: works
        assert m.power_status().state is PowerState.OFF
    finally:
        emu.emulator.faults.clear()
        await hub.close()
