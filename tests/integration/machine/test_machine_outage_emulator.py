"""An API outage: the cache serves the last known state (stale, with its age), actions fail fast, and
everything recovers when the API server is back. A TCP proxy between the hub and the emulator plays the
broken network."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
import yaml
from machine_cluster import Cluster, unique, wait_for

from vmbmc.kubevirt.hub import KubeVirtHub
from vmbmc.machine import BackendUnavailable, Effect, PowerAction, PowerState, Protocol, Requester
from vmbmc_devcluster.emulator.harness import EmulatorThread


class Proxy:
    def __init__(self, port: int) -> None:
        self.target = port
        self.up = True
        self._conns: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._conns.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def cut(self) -> None:
        self.up = False
        for w in self._conns:
            w.close()
        self._conns.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


def req() -> Requester:
    return Requester(Protocol.REDFISH, "admin", "127.0.0.1", f"outage-{unique('r')}")


async def test_outage_and_recovery(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> None:
    name = unique()
    cluster.create_vm(name)
    proxy = Proxy(emu.port)
    port = await proxy.start()
    config = yaml.safe_load(Path(emu.kubeconfig).read_text())
    scheme = emu.url.partition(":")[0]  # the proxy relays TLS untouched
    config["clusters"][0]["cluster"]["server"] = f"{scheme}://127.0.0.1:{port}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    hub = await KubeVirtHub.connect(str(kubeconfig))
    try:
        m = await hub.machine_for_vm("default", name)
        await m.act(PowerAction.ON, req())
        await wait_for(lambda: m.power_status().state is PowerState.ON, what="On")
        assert m.power_status().stale is False and m.power_status().age == 0.0

        proxy.cut()
        await wait_for(lambda: m.power_status().stale, what="stale")
        status = m.power_status()
        assert status.state is PowerState.ON  # the last known state
        await asyncio.sleep(0.2)
        assert m.power_status().age >= 0.2
        with pytest.raises(BackendUnavailable):
            m.submit(PowerAction.OFF, req())
        with pytest.raises(BackendUnavailable):
            await m.act(PowerAction.OFF, req(), settle_timeout=0.2)
        assert hub.ready()  # synced once: readiness stays (the last state is still worth serving)

        cluster.virtctl(name, "stop")  # changes while we cannot see them
        proxy.up = True
        await wait_for(lambda: not m.power_status().stale, timeout=15, what="watch back")
        await wait_for(lambda: m.power_status().state is PowerState.OFF, what="missed change caught up")
        assert (await m.act(PowerAction.ON, req())).effect is Effect.CALLED
    finally:
        await hub.close()
        await proxy.close()
