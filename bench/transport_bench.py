"""CPU per API call of the HTTP transports a Kubernetes client could use (issue 28): process CPU time per
sequential GET of a small JSON object, and per new connection with one streamed GET (what opening a
watch costs), against a local aiohttp server in its own process on 127.0.0.1.

Rows: `vmbmc.k8s.client.ApiClient` (lightkube's configuration on httpx2), httpx2's `AsyncClient`,
httpcore2's connection pool without httpx2's client layer, aiohttp's `ClientSession` (kopf's transport);
for new connections httpcore2 on its default (anyio) network backend and on a minimal asyncio-streams
backend written here, to show what anyio costs.

    python bench/transport_bench.py [--calls 3000] [--connections 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpcore2
import httpx2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmbmc.k8s.client import ApiClient  # noqa: E402
from vmbmc.k8s.config import read  # noqa: E402

SERVER = """
import sys
from aiohttp import web
BODY = {"kind": "Secret", "metadata": {"name": "x", "namespace": "y", "resourceVersion": "1"},
        "data": {"a": "b" * 40}}
async def answer(request):
    return web.json_response(BODY)
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""
PATH = "/api/v1/namespaces/bench/secrets/s{}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def per_call(calls: int, one: Callable[[int], Awaitable[Any]]) -> float:
    await one(-1)  # the connection is open before the clock starts
    start = time.process_time()
    for i in range(calls):
        await one(i)
    return (time.process_time() - start) / calls * 1000


async def sequential(base: str, kubeconfig: Path, calls: int) -> dict[str, float]:
    rows: dict[str, float] = {}
    api = ApiClient(read(kubeconfig).get())
    rows["vmbmc ApiClient (httpx2)"] = await per_call(calls, lambda i: api.request("GET", PATH.format(i)))
    await api.close()
    async with httpx2.AsyncClient(base_url=base) as client:
        async def httpx2_get(i: int) -> Any:
            return (await client.get(PATH.format(i), headers={"Accept": "application/json"})).json()
        rows["httpx2 AsyncClient"] = await per_call(calls, httpx2_get)
    async with httpcore2.AsyncConnectionPool() as pool:
        async def httpcore2_get(i: int) -> Any:
            resp = await pool.request("GET", base + PATH.format(i), headers={"Accept": "application/json"})
            return json.loads(resp.content)
        rows["httpcore2 pool alone"] = await per_call(calls, httpcore2_get)
    async with aiohttp.ClientSession(base) as session:
        async def aiohttp_get(i: int) -> Any:
            async with session.get(PATH.format(i), headers={"Accept": "application/json"}) as resp:
                return await resp.json()
        rows["aiohttp ClientSession"] = await per_call(calls, aiohttp_get)
    return rows


class _Stream(httpcore2.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        async with asyncio.timeout(timeout):
            return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._writer.write(buffer)
        async with asyncio.timeout(timeout):
            await self._writer.drain()

    async def aclose(self) -> None:
        self._writer.close()

    def get_extra_info(self, info: str) -> Any:
        names = {"client_addr": "sockname", "server_addr": "peername"}
        return self._writer.get_extra_info(names.get(info, info))


class _AsyncioBackend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> _Stream:
        async with asyncio.timeout(timeout):
            return _Stream(*await asyncio.open_connection(host, port))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def new_connections(base: str, count: int) -> dict[str, float]:
    rows: dict[str, float] = {}
    for name, backend in (("httpcore2, anyio backend", None), ("httpcore2, asyncio-streams backend",
                                                               _AsyncioBackend())):
        async with httpcore2.AsyncConnectionPool(max_connections=32, max_keepalive_connections=0,
                                                 network_backend=backend) as pool:
            async def stream(i: int) -> None:
                async with pool.stream("GET", base + PATH.format(i)) as resp:
                    async for _ in resp.aiter_stream():
                        pass

            start = time.process_time()
            await asyncio.gather(*(stream(i) for i in range(count)))
            rows[name] = (time.process_time() - start) / count * 1000
    return rows


def kubeconfig_for(base: str, directory: Path) -> Path:
    path = directory / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "bench",
        "clusters": [{"name": "bench", "cluster": {"server": base}}],
        "users": [{"name": "bench", "user": {"token": "bench"}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
    }))
    return path


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("the server did not listen within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        wait_listening(port, server)
        with tempfile.TemporaryDirectory() as tmp:
            calls = asyncio.run(sequential(base, kubeconfig_for(base, Path(tmp)), args.calls))
        connections = asyncio.run(new_connections(base, args.connections))
    finally:
        server.terminate()
        server.wait(10)
    if args.json:
        print(json.dumps({"ms_per_call": calls, "ms_per_new_connection": connections}, indent=2))
        return
    print("| transport | ms CPU per sequential GET |\n|---|---|")
    for name, ms in calls.items():
        print(f"| {name} | {ms:.2f} |")
    print("\n| transport | ms CPU per new connection and streamed GET |\n|---|---|")
    for name, ms in connections.items():
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
