"""Auto-create remembers the BMC it has just created for a VM until the controller's watch delivers it:
further events of that VM meanwhile create nothing (each create would be a 409 and a read, 2,000 wasted
requests for 1,000 VMs created at once); once delivered, the BMC is forgotten, so one deleted later is
made again. Against the emulator, whose injected fault fails any create that should not happen."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from vmbmc import naming as n
from vmbmc.controller import autocreate
from vmbmc.controller.metrics import Metrics
from vmbmc.controller.options import ControllerOptions
from vmbmc.controller.recorder import PowerRecorder
from vmbmc.controller.state import State
from vmbmc.k8s.client import ApiClient
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.emulator.harness import EmulatorThread

ROOT = Path(__file__).resolve().parents[3]
BMCS = f"/apis/{n.GROUP}/{n.VERSION}/namespaces/{n.SYSTEM_NAMESPACE}/{n.PLURAL}"


@contextlib.asynccontextmanager
async def controller_state(tmp_path: Path) -> AsyncIterator[tuple[EmulatorThread, ApiClient, State, dict]]:
    """An emulator with the system namespace and `vms`, the controller's State on it, and a VM (not
    created: auto-create is called with it as a VM event would)."""
    with EmulatorThread(
        kubeconfig=tmp_path / "kubeconfig", crds=[ROOT / "crds" / "virtualmachinebmc.yaml"], rbac=False
    ) as emu:
        store, reg = emu.emulator.store, emu.emulator.registry
        for ns in (n.SYSTEM_NAMESPACE, "vms"):
            emu.call(store.create, reg.get("", "v1", "namespaces"), {"metadata": {"name": ns}})
        api = await ApiClient.connect(str(emu.kubeconfig))
        options = ControllerOptions(kubeconfig=str(emu.kubeconfig))
        state = State(api=api, options=options, metrics=Metrics(), recorder=PowerRecorder(api, "test"))
        try:
            yield emu, api, state, sample_vm(1, "vms")
        finally:
            await api.close()


async def test_a_bmc_just_created_is_not_created_again_until_the_watch_has_it(tmp_path: Path) -> None:
    async with controller_state(tmp_path) as (emu, api, state, vm):
        vm_name = vm["metadata"]["name"]

        async def sync() -> None:  # as a VM event does while the index has no BMC for the VM
            await autocreate.sync_vm(state, "vms", vm_name, vm, None, [], lambda _name: None)

        await sync()
        bmcs = (await api.request("GET", BMCS))["items"]
        assert [n.vm_ref(b) for b in bmcs] == [("vms", vm_name)]
        # any further create fails: a second sync must not try one
        emu.emulator.faults.add("POST", rf"/{n.PLURAL}$", status=500, message="created twice")
        await sync()
        await sync()
        emu.emulator.faults.clear()
        assert len((await api.request("GET", BMCS))["items"]) == 1

        # the watch delivers it: forgotten; deleted by hand, it is made again on the VM's next event
        autocreate.seen(state, bmcs[0])
        await api.request("DELETE", f"{BMCS}/{bmcs[0]['metadata']['name']}")
        await sync()
        assert [n.vm_ref(b) for b in (await api.request("GET", BMCS))["items"]] == [("vms", vm_name)]


async def test_a_create_answered_409_by_our_own_bmc_is_remembered_too(tmp_path: Path) -> None:
    """Our create reached the server but its answer was lost (the client sent it again, 409), or another
    event's create won: the BMC found under the name is ours, and it is remembered like any create."""
    async with controller_state(tmp_path) as (emu, api, state, vm):
        vm_name = vm["metadata"]["name"]
        name = n.plain_bmc_name("vms", vm_name)
        await api.request("POST", BMCS, body=autocreate.new_bmc(state, name, "vms", vm_name))

        async def sync() -> None:  # the index has not seen the BMC yet
            await autocreate.sync_vm(state, "vms", vm_name, vm, None, [], lambda _name: None)

        await sync()  # 409, then the BMC read: ours
        emu.emulator.faults.add("POST", rf"/{n.PLURAL}$", status=500, message="created again")
        await sync()
        emu.emulator.faults.clear()
        assert [b["metadata"]["name"] for b in (await api.request("GET", BMCS))["items"]] == [name]
