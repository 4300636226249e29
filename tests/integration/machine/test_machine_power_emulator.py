"""Every power action from every state, against the emulator's fake KubeVirt."""

from __future__ import annotations

import itertools

import pytest
from machine_cluster import Cluster, unique, wait_for

from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.machine import (
    Effect,
    NotSupported,
    PowerAction,
    PowerState,
    Protocol,
    Refused,
    Requester,
)
from vmbmc_devcluster.emulator.harness import EmulatorThread

_ids = itertools.count(1)


def req(protocol: Protocol = Protocol.REDFISH) -> Requester:
    return Requester(protocol, "admin", "127.0.0.1", f"req-{next(_ids)}")


async def test_every_action(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name)
    cluster.create_bmc(name + "-bmc", name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        m = await hub.machine_for_bmc("default", name + "-bmc")
        assert hub.ready()
        assert m.vm == f"default/{name}" and m.bmc == f"default/{name}-bmc"
        assert m.power_status().state is PowerState.OFF

        res = m.submit(PowerAction.ON, req(Protocol.IPMI))
        assert res.effect is Effect.PENDING
        assert m.power_status().state is PowerState.POWERING_ON  # shown at once, before the watch
        await wait_for(lambda: m.power_status().state is PowerState.ON, what="On")
        uid1 = m.power_status().vmi_uid
        assert uid1

        assert (await m.act(PowerAction.ON, req())).effect is Effect.NONE
        assert (await m.act(PowerAction.PAUSE, req())).effect is Effect.CALLED
        await wait_for(lambda: m.power_status().state is PowerState.PAUSED, what="Paused")
        assert (await m.act(PowerAction.PAUSE, req())).effect is Effect.NONE
        with pytest.raises(Refused):
            await m.act(PowerAction.SHUTDOWN, req())
        assert (await m.act(PowerAction.RESUME, req())).effect is Effect.CALLED
        await wait_for(lambda: m.power_status().state is PowerState.ON, what="On after resume")
        assert (await m.act(PowerAction.RESUME, req())).effect is Effect.NONE

        for action in (PowerAction.RESET, PowerAction.CYCLE, PowerAction.GRACEFUL_RESTART):
            before = m.power_status().vmi_uid
            assert (await m.act(action, req())).effect is Effect.CALLED
            await wait_for(
                lambda b=before: (
                    m.power_status().vmi_uid not in ("", b) and m.power_status().state is PowerState.ON
                ),
                what=f"new VMI after {action}",
            )

        with pytest.raises(NotSupported):
            m.submit(PowerAction.NMI, req(Protocol.IPMI))

        assert (await m.act(PowerAction.SHUTDOWN, req())).effect is Effect.CALLED
        await wait_for(lambda: m.power_status().state is PowerState.OFF, what="Off")
        assert (await m.act(PowerAction.OFF, req())).effect is Effect.NONE
        assert (await m.act(PowerAction.SHUTDOWN, req())).effect is Effect.NONE
        with pytest.raises(Refused):
            m.submit(PowerAction.RESET, req(Protocol.IPMI))
        with pytest.raises(Refused):
            await m.act(PowerAction.PAUSE, req())
        # Redfish ForceRestart from Off starts the VM
        assert (await m.act(PowerAction.RESET, req())).effect is Effect.CALLED
        await wait_for(lambda: m.power_status().state is PowerState.ON, what="On after reset from Off")
        assert (await m.act(PowerAction.OFF, req())).effect is Effect.CALLED
        await wait_for(lambda: m.power_status().state is PowerState.OFF, what="Off after force off")

        bmc = cluster.bmc(name + "-bmc")
        assert bmc is not None
        reqs = bmc["status"]["requests"]
        assert len(reqs) == 10
        assert reqs[-1]["action"] == "off" and reqs[-1]["effect"] == "called"
        events = cluster.events_for(name + "-bmc")
        reasons = {e["reason"] for e in events}
        assert {
            "PowerOnRequested",
            "PauseRequested",
            "ResetRequested",
            "PowerCycleRequested",
            "RestartRequested",
            "ShutdownRequested",
            "PowerOffRequested",
            "ResumeRequested",
            "NmiRequested",
        } <= reasons
    finally:
        await hub.close()
