"""The back end's store of Redfish event subscriptions against the emulator: the BMC's Secret
`<bmc>-event-subscriptions`, one key per subscription, each write one key; a missing Secret reads as
empty and refuses writes naming it; a key edited by hand is skipped; a standalone VM keeps them in
memory."""

from __future__ import annotations

import base64
import json

import pytest
from machine_cluster import Cluster, rt, unique

from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.machine import BackendUnavailable
from vmbmc.machine.subscriptions import MemoryStore
from vmbmc_devcluster.emulator.harness import EmulatorThread


def secret(emu: EmulatorThread, name: str, data: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
            "type": "Opaque", "data": data}
    emu.call(emu.emulator.store.create, rt(emu, "", "secrets"), body, "default")


async def test_keys_in_the_bmcs_secret(emu: EmulatorThread, cluster: Cluster) -> None:
    name = unique()
    cluster.create_vm(name)
    bmc = name + "-bmc"
    cluster.create_bmc(bmc, name)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        machine = await hub.machine_for_bmc("default", bmc)
        store = machine.event_subscriptions()
        assert store.durable and store is machine.event_subscriptions()
        assert await store.load() == {}  # no Secret yet: nothing to deliver
        with pytest.raises(BackendUnavailable, match=f"{bmc}-event-subscriptions.*does not exist"):
            await store.put("00aa", {"Destination": "http://127.0.0.1/"})

        secret(emu, f"{bmc}-event-subscriptions", {"hand": base64.b64encode(b"not json").decode()})
        await store.put("00aa", {"Destination": "http://127.0.0.1/a", "HttpHeaders": [{"X-T": "s"}]})
        await store.put("00bb", {"Destination": "http://127.0.0.1/b"})
        await store.put("00aa", {"Destination": "http://127.0.0.1/a", "Cursor": {"eventId": "7c1e"}})
        assert await store.load() == {  # the edited-by-hand key skipped
            "00aa": {"Destination": "http://127.0.0.1/a", "Cursor": {"eventId": "7c1e"}},
            "00bb": {"Destination": "http://127.0.0.1/b"},
        }
        await store.remove("00bb")
        await store.remove("00bb")  # gone already: nothing
        where = f"{bmc}-event-subscriptions"
        stored = emu.call(emu.emulator.store.get, rt(emu, "", "secrets"), "default", where)
        assert set(stored["data"]) == {"hand", "00aa"}
        assert json.loads(base64.b64decode(stored["data"]["00aa"]))["Cursor"] == {"eventId": "7c1e"}

        standalone = await hub.machine_for_vm("default", name)
        memory = standalone.event_subscriptions()
        assert isinstance(memory, MemoryStore) and not memory.durable
    finally:
        await hub.close()
