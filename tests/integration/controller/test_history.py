"""PowerRecorder against the emulator: request records written by the real back end (KubeVirtHub), changes
made outside the BMC through the emulator's KubeVirt hooks, Events and powerHistory read back, and a second
recorder (a restarted controller) that must add nothing.

The kopf wiring is the other half of the controller; here a small watch loop (`Driver`) feeds the recorder
every watch event of the BMC, its VM and its VMI, in order, as the controller does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.integration.controller.conftest import controller_kubeconfig
from vmbmc.controller import transitions as tr
from vmbmc.controller.recorder import MARKER_ANNOTATION, PowerRecorder
from vmbmc.k8s.client import WATCH_OPEN, ApiClient, ApiError
from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.machine import PowerAction, Protocol, Requester
from vmbmc.naming import bmc_path, vm_path
from vmbmc_devcluster.emulator.harness import EmulatorThread

NS = "default"
_names = itertools.count(1)
_requests = itertools.count(1)


def vm_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "spec": {
                    "domain": {
                        "devices": {
                            "disks": [{"name": "root", "disk": {"bus": "virtio"}, "bootOrder": 1}],
                            "interfaces": [{"name": "default", "masquerade": {}}],
                        },
                        "memory": {"guest": "1Gi"},
                    },
                    "networks": [{"name": "default", "pod": {}}],
                    "volumes": [
                        {"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora"}}
                    ],
                    "terminationGracePeriodSeconds": 30,
                }
            },
        },
    }


def bmc_body(name: str, vm: str) -> dict[str, Any]:
    return {
        "apiVersion": "virtualmachine.kubevirt.io/v1",
        "kind": "VirtualMachineBMC",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"virtualMachineRef": {"namespace": NS, "name": vm}},
    }


def requester() -> Requester:
    return Requester(Protocol.IPMI, "admin", "127.0.0.1", f"hist-req-{next(_requests)}")


async def wait_for(pred: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await pred()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Driver:
    """Watches one BMC, its VM and its VMI and calls `recorder.observe` after every event, in order."""

    def __init__(self, api: ApiClient, recorder: PowerRecorder, bmc: str, vm: str) -> None:
        self.api, self.recorder = api, recorder
        self.paths = {
            "bmc": (bmc_path(NS), bmc),
            "vm": (vm_path(NS), vm),
            "vmi": (vm_path(NS, None, "virtualmachineinstances"), vm),
        }
        self.objs: dict[str, dict[str, Any] | None] = dict.fromkeys(self.paths)
        self.queue: asyncio.Queue[tuple[Any, Any, Any]] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.opened = 0

    async def __aenter__(self) -> Driver:
        self.tasks = [asyncio.create_task(self._watch(kind)) for kind in self.paths]
        self.tasks.append(asyncio.create_task(self._feed()))
        deadline = asyncio.get_running_loop().time() + 5
        while self.opened < len(self.paths) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self, kind: str) -> None:
        path, name = self.paths[kind]
        opened = False
        while True:
            try:
                async for event in self.api.watch(path, {"fieldSelector": f"metadata.name={name}"}):
                    if event["type"] == WATCH_OPEN:
                        if not opened:
                            self.opened, opened = self.opened + 1, True
                        continue
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.objs[kind] = event["object"]
                    elif event["type"] == "DELETED":
                        self.objs[kind] = None
                    else:
                        continue
                    self.queue.put_nowait((self.objs["bmc"], self.objs["vm"], self.objs["vmi"]))
            except ApiError:
                await asyncio.sleep(0.1)

    async def _feed(self) -> None:
        while True:
            bmc, vm, vmi = await self.queue.get()
            if bmc is not None:
                await self.recorder.observe(bmc, vm, vmi)


class Scene:
    """One VM with one BMC, and synchronous views of the emulator's store."""

    def __init__(self, emu: EmulatorThread, api: ApiClient) -> None:
        self.emu, self.api = emu, api
        n = next(_names)
        self.vm, self.bmc = f"hist-vm{n}", f"hist-bmc{n}"
        self.kv = emu.kubevirt

    async def create(self) -> None:
        await self.api.request("POST", vm_path(NS), body=vm_body(self.vm))
        await self.api.request("POST", bmc_path(NS), body=bmc_body(self.bmc, self.vm))

    async def get_bmc(self) -> dict[str, Any]:
        obj: dict[str, Any] = await self.api.request("GET", bmc_path(NS, self.bmc))
        return obj

    async def get(self, resource: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await self.api.request("GET", vm_path(NS, self.vm, resource))
        except ApiError as err:
            if err.code == 404:
                return None
            raise
        return obj

    async def history(self) -> list[dict[str, Any]]:
        return list(((await self.get_bmc()).get("status") or {}).get("powerHistory") or [])

    async def events_about(self, kind: str, name: str) -> list[dict[str, Any]]:
        """The controller's Events about one object, found as `kubectl describe` finds them."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        listed = await self.api.request(
            "GET", f"/api/v1/namespaces/{NS}/events", params={"fieldSelector": selector}
        )
        # Ours only: the kbmc writes request Events about the BMC too.
        return [e for e in listed["items"] if e.get("reportingComponent") == "vmbmc-controller"]

    async def bmc_events(self) -> list[dict[str, Any]]:
        return await self.events_about("VirtualMachineBMC", self.bmc)

    async def vm_events(self) -> list[dict[str, Any]]:
        return await self.events_about("VirtualMachine", self.vm)

    async def events(self) -> list[dict[str, Any]]:
        """Every transition Event of this scene: on the BMC and on the VM."""
        return await self.bmc_events() + await self.vm_events()

    async def wait_entry(self, reason: str, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        """The `count`-th history entry recorded for `reason` (matched through its Event's reason)."""

        async def found() -> dict[str, Any] | None:
            reasons = {e["metadata"]["name"]: e["reason"] for e in await self.bmc_events()}
            matching = [h for h in await self.history() if reasons.get(f"{self.bmc}.{h['id']}") == reason]
            return matching[count - 1] if len(matching) >= count else None

        try:
            entry: dict[str, Any] = await wait_for(found, f"{reason} #{count} in the history", timeout)
        except AssertionError as err:
            raise AssertionError(f"{err}; history: {await self.history()}") from None
        return entry

    async def wait_vm(self, printable: str) -> None:
        async def shown() -> bool:
            vm = await self.get("virtualmachines")
            return bool(vm and (vm.get("status") or {}).get("printableStatus") == printable)

        await wait_for(shown, f"VM {printable}")

    async def api_events(self, kind: str, name: str) -> list[dict[str, Any]]:
        """Every Event about the object, whoever wrote it."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        listed = await self.api.request(
            "GET", f"/api/v1/namespaces/{NS}/events", params={"fieldSelector": selector}
        )
        return list(listed["items"])

    def hook(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.emu.call(getattr(self.kv, name), NS, self.vm, *args, **kwargs)


@pytest.fixture
async def api(emulator: EmulatorThread) -> AsyncIterator[ApiClient]:
    client = await ApiClient.connect(emulator.kubeconfig)
    yield client
    await client.close()


@pytest.fixture
async def as_controller(emulator: EmulatorThread) -> AsyncIterator[ApiClient]:
    """The recorder's client: the controller's ServiceAccount with exactly deploy/rbac.yaml."""
    client = await ApiClient.connect(controller_kubeconfig(emulator))
    yield client
    await client.close()


@pytest.fixture
async def hub(emulator: EmulatorThread) -> AsyncIterator[KubeVirtHub]:
    h = await KubeVirtHub.connect(emulator.kubeconfig)
    yield h
    await h.close()


async def test_requests_and_outside_changes(
    emulator: EmulatorThread,
    api: ApiClient,
    as_controller: ApiClient,
    hub: KubeVirtHub,
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    scene = Scene(emulator, api)
    await scene.create()
    recorder = PowerRecorder(as_controller, "controller-test-0")
    async with Driver(as_controller, recorder, scene.bmc, scene.vm):
        await wait_for(lambda: _state(scene, "Off"), "first observation: Off")
        bmc = await scene.get_bmc()
        assert not (bmc.get("status") or {}).get("powerHistory")  # nothing invented
        assert MARKER_ANNOTATION in bmc["metadata"]["annotations"]

        # Power on through the BMC: attributed to the IPMI request.
        machine = await hub.machine_for_bmc(NS, scene.bmc)
        first = requester()
        await machine.act(PowerAction.ON, first)
        on = await scene.wait_entry("PoweredOn")
        assert on["cause"] == "Request" and on["requestId"] == first.request_id
        assert on["message"] == f"by IPMI user admin from 127.0.0.1 (request {first.request_id})"
        assert (on["from"], on["to"]) == ("Off", "On")
        vmi = await scene.get("virtualmachineinstances")
        assert vmi is not None
        running = [
            p["phaseTransitionTimestamp"]
            for p in vmi["status"]["phaseTransitionTimestamps"]
            if p["phase"] == "Running"
        ]
        assert on["time"] == running[-1]
        events = {e["metadata"]["name"]: e for e in await scene.bmc_events()}
        event = events[f"{scene.bmc}.{on['id']}"]
        assert event["reason"] == "PoweredOn" and event["type"] == "Normal"
        assert event["message"] == on["message"]
        assert event["involvedObject"]["kind"] == "VirtualMachineBMC"
        assert event["involvedObject"]["uid"] == bmc["metadata"]["uid"]
        assert event["firstTimestamp"] == on["time"] <= event["lastTimestamp"]
        assert event["eventTime"] > on["time"][:-1]  # when it was seen: after KubeVirt's second began
        assert event["action"] == "PoweredOn"
        assert event["count"] == 1 and event["source"]["component"] == "vmbmc-controller"
        assert event["reportingComponent"] == "vmbmc-controller"
        assert event["reportingInstance"] == "controller-test-0"
        # Its request Event (the kbmc's) comes first in eventTime, even within one second.
        (asked,) = [
            e
            for e in await scene.api_events("VirtualMachineBMC", scene.bmc)
            if e["reason"] == "PowerOnRequested" and first.request_id in e["message"]
        ]
        assert asked["eventTime"] < event["eventTime"]
        # kubectl describe sorts on lastTimestamp (whole seconds): an effect's is rounded up past its cause's.
        assert asked["lastTimestamp"] < event["lastTimestamp"]
        (vm_event,) = [e for e in await scene.vm_events() if e["reason"] == "PoweredOn"]
        assert (
            vm_event["metadata"]["name"]
            == f"{scene.vm}.{tr.vm_transition_id(vmi['metadata']['uid'], 'PoweredOn')}"
        )
        assert vm_event["involvedObject"]["uid"] == (await scene.get("virtualmachines"))["metadata"]["uid"]
        assert vm_event["message"] == (
            f"by IPMI user admin from 127.0.0.1 through BMC {NS}/{scene.bmc} (request {first.request_id})"
        )
        conditions = {c["type"]: c for c in (await scene.get_bmc())["status"]["conditions"]}
        assert conditions["PoweredOn"]["status"] == "True"
        assert conditions["BootOverridePending"]["status"] == "False"

        # Stopped straight through the KubeVirt API.
        scene.hook("virtctl", "stop")
        off = await scene.wait_entry("PoweredOff")
        assert off["cause"] == "External"
        assert off["message"] == "outside the BMC: stopped through the KubeVirt API"

        scene.hook("virtctl", "start")
        on2 = await scene.wait_entry("PoweredOn", 2)
        assert on2["message"] == "outside the BMC: started through the KubeVirt API"

        # Guest shutdown (runStrategy Always: KubeVirt starts it again).
        await scene.wait_vm("Running")
        scene.hook("guest_shutdown")
        down = await scene.wait_entry("PoweredOff", 2)
        assert down["message"] == "outside the BMC: guest shutdown"
        again = await scene.wait_entry("PoweredOn", 3)
        assert again["message"].startswith("outside the BMC: started again by KubeVirt")

        # Pause and resume from outside.
        await scene.wait_vm("Running")
        scene.hook("virtctl", "pause")
        paused = await scene.wait_entry("Paused")
        assert (paused["from"], paused["to"]) == ("On", "Paused")
        assert paused["message"] == "outside the BMC: paused through the KubeVirt API"
        scene.hook("virtctl", "unpause")
        resumed = await scene.wait_entry("Resumed")
        assert (resumed["from"], resumed["to"]) == ("Paused", "On")

        # Reset through the BMC: one Restarted, attributed.
        reset = requester()
        await machine.act(PowerAction.RESET, reset)
        restarted = await scene.wait_entry("Restarted")
        assert restarted["cause"] == "Request" and restarted["requestId"] == reset.request_id

        # The VMI fails: a Warning, never attributed.
        await scene.wait_vm("Running")
        scene.hook("vmi_fail")
        failed = await scene.wait_entry("PoweredOff", 3)
        assert failed["message"] == "outside the BMC: VMI failed"
        events = {e["metadata"]["name"]: e for e in await scene.bmc_events()}
        assert events[f"{scene.bmc}.{failed['id']}"]["type"] == "Warning"
        await scene.wait_entry("PoweredOn", 4)
        await scene.wait_vm("Running")
        await asyncio.sleep(0.3)  # let the driver drain

    history = await scene.history()
    events = await scene.events()
    ids = [h["id"] for h in history]
    assert len(ids) == len(set(ids)) == 10
    # One on the BMC and one on the VM for each.
    assert len(events) == 2 * len(history), (
        [(e["metadata"]["name"], e["reason"], e["message"]) for e in events],
        history,
    )

    # A restarted controller (new recorder, same objects, re-listed) adds nothing.
    again_recorder = PowerRecorder(as_controller, "controller-test-1")
    bmc_now = await scene.get_bmc()
    vm_now, vmi_now = await scene.get("virtualmachines"), await scene.get("virtualmachineinstances")
    await asyncio.gather(*(again_recorder.observe(bmc_now, vm_now, vmi_now) for _ in range(3)))
    async with Driver(as_controller, again_recorder, scene.bmc, scene.vm):
        await asyncio.sleep(0.5)
    assert [h["id"] for h in await scene.history()] == ids
    assert len(await scene.events()) == len(events)

    # kubectl describe shows them.
    described = kubectl("describe", "vmbmc", scene.bmc, "-n", NS).stdout
    for reason in ("PoweredOn", "PoweredOff", "Restarted", "Paused", "Resumed"):
        assert reason in described, described
    assert "IPMI user admin" in described
    await recorder.close()
    await again_recorder.close()


async def test_change_while_the_controller_is_down(
    emulator: EmulatorThread, api: ApiClient, as_controller: ApiClient
) -> None:
    """The marker tells a new controller which VMI it last saw: a stop made while it was down is recorded
    once, with the time KubeVirt recorded."""
    scene = Scene(emulator, api)
    await scene.create()
    recorder = PowerRecorder(as_controller, "controller-a")
    async with Driver(as_controller, recorder, scene.bmc, scene.vm):
        scene.hook("virtctl", "start")
        await scene.wait_entry("PoweredOn")
    await recorder.close()
    scene.hook("virtctl", "stop")
    await scene.wait_vm("Stopped")
    assert len(await scene.history()) == 1
    successor = PowerRecorder(as_controller, "controller-b")
    async with Driver(as_controller, successor, scene.bmc, scene.vm):
        off = await scene.wait_entry("PoweredOff")
        assert off["message"] == "outside the BMC: stopped through the KubeVirt API"
        await asyncio.sleep(0.3)
    assert len(await scene.history()) == 2
    assert len(await scene.events()) == 4
    await successor.close()


async def test_status_write_fails_then_retries_once(
    emulator: EmulatorThread, api: ApiClient, as_controller: ApiClient
) -> None:
    """Events are written before the status; when the status write fails, the recorder retries on its own
    and the Events it already wrote are not written twice."""
    scene = Scene(emulator, api)
    await scene.create()
    recorder = PowerRecorder(as_controller, "controller-retry")
    async with Driver(as_controller, recorder, scene.bmc, scene.vm):
        await wait_for(lambda: _state(scene, "Off"), "first observation")
        # ApiClient itself retries a 5xx three times; five failures make the recorder's own attempt fail.
        emulator.call(
            emulator.emulator.faults.add,
            "PATCH",
            f"virtualmachinebmcs/{scene.bmc}/status$",
            status=500,
            count=5,
        )
        scene.hook("virtctl", "start")
        on = await scene.wait_entry("PoweredOn", timeout=15)
        assert on["cause"] == "External"
        await asyncio.sleep(0.3)
    assert len(await scene.history()) == 1
    assert len(await scene.events()) == 2
    await recorder.close()


async def _state(scene: Scene, value: str) -> bool:
    return ((await scene.get_bmc()).get("status") or {}).get("powerState") == value


async def test_history_is_bounded_and_boot_changes_are_recorded(
    emulator: EmulatorThread, api: ApiClient, as_controller: ApiClient
) -> None:
    scene = Scene(emulator, api)
    await scene.create()
    recorder = PowerRecorder(as_controller, "controller-boot")
    path = vm_path(NS, scene.vm)
    async with Driver(as_controller, recorder, scene.bmc, scene.vm):
        await wait_for(lambda: _state(scene, "Off"), "first observation")
        for i in range(23):
            order = 2 + i % 2
            patch = [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/domain/devices/disks/0/bootOrder",
                    "value": order,
                }
            ]
            await api.request("PATCH", path, body=patch, content_type="application/json-patch+json")
            await wait_for(lambda n=i + 1: _events_at_least(scene, 2 * n), f"boot change {i + 1}")
            if i == 0:
                first = (await scene.history())[0]
                assert (first["from"], first["to"], first["cause"]) == ("Off", "Off", "External")
                assert first["message"].startswith(
                    "outside the BMC: boot order changed in the VirtualMachine spec"
                )
        await asyncio.sleep(0.3)
    history = await scene.history()
    assert len(history) == 20
    events = {e["metadata"]["name"]: e for e in await scene.bmc_events()}
    assert len(events) == 23  # Events are not trimmed: 23 transitions...
    assert len(await scene.vm_events()) == 23  # ...on the BMC and on the VM
    assert all(events[f"{scene.bmc}.{h['id']}"]["reason"] == "BootDeviceChanged" for h in history)
    # Newest last: the last entry describes the last order written (23rd change: i = 22, order 2).
    assert "disk:root=2" in history[-1]["message"]
    await recorder.close()


async def _events_at_least(scene: Scene, n: int) -> bool:
    return len(await scene.events()) >= n
