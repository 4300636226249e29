"""Exactly once, end to end: a KubeVirt `restart` whose answer never comes back. The real hub and Machine
talk to the emulator through a proxy that relays everything, except that after passing on a
`PUT …/restart` it drops the client's connection without relaying KubeVirt's answer (the API server read
the call and carried it out; the client cannot know). KubeVirt gets exactly one call, and the request
record ends `unknown` (it may have been carried out), never `failed` and never sent again."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.machine import Effect, PowerAction, Protocol, Requester
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.emulator.harness import EmulatorThread

ROOT = Path(__file__).resolve().parents[3]
NS = "default"
RESTART = re.compile(
    rb"PUT /apis/subresources\.kubevirt\.io/v1/namespaces/[^/]+/virtualmachines/[^/]+/restart "
)


class DroppingProxy:
    """TCP relay to `port`; a client connection that carries a restart is cut once it has been passed on
    and KubeVirt has answered it (the answer is swallowed)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.restarts = 0
        self.dropped = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> DroppingProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self._writers:  # the relays end when their connections do
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers.update((writer, up_writer))
        dropping = asyncio.Event()

        async def upstream() -> None:  # client -> KubeVirt
            while data := await reader.read(65536):
                if RESTART.search(data):
                    self.restarts += 1
                    dropping.set()  # before passing it on: its answer must not get through
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:  # KubeVirt -> client
            while data := await up_reader.read(65536):
                if dropping.is_set():
                    self.dropped.set()
                    return  # the answer is read from KubeVirt, never relayed
                writer.write(data)
                await writer.drain()

        try:
            with contextlib.suppress(OSError):
                _, pending = await asyncio.wait(
                    [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for other in pending:
                    other.cancel()
        finally:
            writer.close()
            up_writer.close()


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    crds = [p for p in sorted((ROOT / "crds").glob("*.yaml")) if "CustomResourceDefinition" in p.read_text()]
    with (
        tempfile.TemporaryDirectory(prefix="vmbmc-once-") as tmp,
        EmulatorThread(
            kubeconfig=Path(tmp) / "kubeconfig",
            crds=crds,
            tls=False,  # the proxy reads the requests it relays
            kubevirt_options={"start_delay": 0.1, "stop_delay": 0.1},
        ) as emulator,
    ):
        yield emulator


def store(emu: EmulatorThread, group: str, plural: str) -> Any:
    return emu.emulator.registry.get(group, "v1", plural)


def bmcs(emu: EmulatorThread) -> Any:
    return store(emu, "virtualmachine.kubevirt.io", "virtualmachinebmcs")


def running_vmi_uid(emu: EmulatorThread, name: str) -> str | None:
    vmi = emu.call(emu.emulator.store.try_get, store(emu, "kubevirt.io", "virtualmachineinstances"), NS, name)
    if not vmi or (vmi.get("status") or {}).get("phase") != "Running":
        return None
    return str(vmi["metadata"]["uid"])


def record(emu: EmulatorThread, bmc: str, request_id: str) -> dict[str, Any]:
    obj = emu.call(
        emu.emulator.store.try_get, bmcs(emu), NS, bmc
    )
    found = [r for r in ((obj or {}).get("status") or {}).get("requests") or [] if r.get("id") == request_id]
    return found[0] if found else {}


async def until(what: str, check: Any, timeout: float = 30.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (value := check()):
            await asyncio.sleep(0.05)
    assert value, what
    return value


@pytest.fixture
async def vm_and_bmc(emu: EmulatorThread) -> AsyncIterator[tuple[str, str]]:
    vm = copy.deepcopy(sample_vm(1, NS))
    vm["metadata"]["name"] = name = "once"
    emu.call(emu.emulator.store.create, store(emu, "kubevirt.io", "virtualmachines"), vm, NS)
    bmc = {
        "apiVersion": "virtualmachine.kubevirt.io/v1",
        "kind": "VirtualMachineBMC",
        "metadata": {"name": "once-bmc", "namespace": NS},
        "spec": {"virtualMachineRef": {"namespace": NS, "name": name}},
    }
    emu.call(
        emu.emulator.store.create, bmcs(emu), bmc, NS
    )
    assert emu.call(emu.kubevirt.virtctl, NS, name, "start") == 202
    await until("the VM running", lambda: running_vmi_uid(emu, name))
    yield name, "once-bmc"


async def test_a_restart_whose_answer_is_lost_is_sent_once_and_ends_unknown(
    emu: EmulatorThread, vm_and_bmc: tuple[str, str], tmp_path: Path
) -> None:
    vm, bmc = vm_and_bmc
    first_vmi = running_vmi_uid(emu, vm)
    async with DroppingProxy(emu.port) as proxy:
        config = yaml.safe_load(Path(emu.kubeconfig).read_text())
        config["clusters"][0]["cluster"]["server"] = proxy.url
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        hub = await KubeVirtHub.connect(str(kubeconfig))
        try:
            machine = await hub.machine_for_bmc(NS, bmc)
            await hub.api.request("GET", "/version")  # a kept-alive connection for the call to reuse
            who = Requester(Protocol.IPMI, "admin", "127.0.0.1", "lost-answer")
            assert machine.submit(PowerAction.RESET, who).effect is Effect.PENDING
            await until("the answer swallowed", proxy.dropped.is_set)
            await until(
                "the record settled",
                lambda: record(emu, bmc, "lost-answer").get("effect") not in (None, "pending"),
            )
            assert record(emu, bmc, "lost-answer")["effect"] == "unknown"
            # KubeVirt carried the one call out: a new VMI replaced the running one.
            await until("the VM restarted", lambda: running_vmi_uid(emu, vm) not in (None, first_vmi))
            await asyncio.sleep(1.0)  # room for a second call, had anything sent one
            assert proxy.restarts == 1
        finally:
            await hub.close()
