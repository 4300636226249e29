"""The API client's HTTP/1.1 layer against scripted servers on 127.0.0.1: keep-alive, a kept-alive
connection the server dropped, chunked and close-delimited bodies, and watch streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from vmbmc.k8s.client import WATCH_OPEN, ApiClient, ApiError
from vmbmc.k8s.http import HttpClient
from vmbmc.k8s.kubeconfig import ClusterConfig

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Scripted:
    """A TCP server running `handler(reader, writer, connection_number)` for each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(10):
                await self.handler(reader, writer, self.connections)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> str | None:
        """The request line (headers and Content-Length body consumed), None at EOF."""
        line = (await reader.readline()).decode().strip()
        if not line:
            return None
        length = 0
        while header := (await reader.readline()).strip():
            name, _, value = header.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        self.requests.append(line)
        return line


def answer(body: dict[str, Any]) -> bytes:
    raw = json.dumps(body).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    return head.encode() + raw


def api_for(url: str) -> ApiClient:
    return ApiClient(ClusterConfig(server=url, token="t"))


async def test_keep_alive_reuses_one_connection() -> None:
    srv: Scripted

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while (line := await srv.read_request(reader)) is not None:
            writer.write(answer({"n": n, "line": line}))
            await writer.drain()

    async with Scripted(handler) as srv:
        api = api_for(srv.url)
        try:
            for i in range(5):
                got = await api.request(
                    "POST" if i % 2 else "GET",
                    f"/x/{i}",
                    params={"labelSelector": "a in (b,c)"},
                    body={"i": i} if i % 2 else None,
                )
                assert got["n"] == 1
            assert srv.requests[0] == "GET /x/0?labelSelector=a+in+%28b%2Cc%29 HTTP/1.1"
        finally:
            await api.close()
    assert srv.connections == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_dropped_kept_alive_connection_is_replaced(method: str) -> None:
    """The server answers the first request of each connection, then reads the next one and hangs up
    without a word (a keep-alive timeout racing our request): the request goes again on a new one."""
    srv: Scripted

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(answer({"n": n}))
        await writer.drain()
        await srv.read_request(reader)  # and close

    async with Scripted(handler) as srv:
        api = api_for(srv.url)
        try:
            assert await api.request(method, "/a", retry=False) == {"n": 1}
            assert await api.request(method, "/b", retry=False) == {"n": 2}
        finally:
            await api.close()
    assert srv.connections == 2
    assert [r.split()[1] for r in srv.requests] == ["/a", "/b", "/b"]


async def test_a_new_connection_closed_without_answer_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readline()

    async with Scripted(handler) as srv:
        api = api_for(srv.url)
        try:
            with pytest.raises(ApiError) as err:
                await api.request("GET", "/x", retry=False)
        finally:
            await api.close()
    assert err.value.code == 0 and srv.connections == 1


async def test_chunked_and_close_delimited_bodies() -> None:
    srv: Scripted
    payload = json.dumps({"items": ["x" * 70_000, "y"]}).encode()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        line = await srv.read_request(reader)
        assert line is not None
        if "/chunked" in line:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (payload[:5], payload[5:40_000], payload[40_000:]):
                writer.write(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n")
            writer.write(b"0\r\nX-Trailer: yes\r\n\r\n")
            writer.write(answer({"after": "chunked"}) if await srv.read_request(reader) else b"")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + payload)
        await writer.drain()

    async with Scripted(handler) as srv:
        http = HttpClient(srv.url)
        try:
            resp = await http.request("GET", "/chunked", {})
            assert resp.status == 200 and resp.body == payload
            assert (await http.request("GET", "/again", {})).body == b'{"after": "chunked"}'
            resp = await http.request("GET", "/until-close", {})
            assert resp.body == payload
        finally:
            await http.close()
    assert srv.connections == 2  # the close-delimited body took a connection of its own


async def test_watch_stream_lines_across_chunks() -> None:
    srv: Scripted
    events = [
        {"type": "ADDED", "object": {"metadata": {"name": f"vm{i}"}, "big": "z" * 150_000 * (i == 1)}}
        for i in range(3)
    ]
    stream = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for start in range(0, len(stream), 7_777):  # boundaries fall inside lines
            part = stream[start : start + 7_777]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async with Scripted(handler) as srv:
        api = api_for(srv.url)
        try:
            got = [
                e async for e in api.watch("/apis/kubevirt.io/v1/virtualmachines", {"resourceVersion": "1"})
            ]
        finally:
            await api.close()
    assert got[0] == {"type": WATCH_OPEN} and got[1:] == events
    assert "watch=true" in srv.requests[0]


async def test_error_answers_keep_their_status() -> None:
    srv: Scripted
    status = {"kind": "Status", "reason": "NotFound", "message": 'vm "x" not found', "code": 404}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        raw = json.dumps(status).encode()
        writer.write(f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(raw)}\r\n\r\n".encode() + raw)
        await writer.drain()

    async with Scripted(handler) as srv:
        api = api_for(srv.url)
        try:
            with pytest.raises(ApiError) as err:
                await api.request("GET", "/x")
        finally:
            await api.close()
    assert (err.value.code, err.value.reason, err.value.message) == (404, "NotFound", 'vm "x" not found')


async def test_a_call_that_times_out_waiting_for_a_slot_was_not_sent() -> None:
    """Every request slot held by hung calls: a call whose timeout counts its wait (the kbmc's) gives up
    unsent (NOT_SENT: it may be sent again, it cannot have reached the server); a call whose wait does
    not count (the controller's reconciles) waits its turn and is answered once a slot frees."""
    from vmbmc.k8s.client import NOT_SENT
    from vmbmc.k8s.http import MAX_REQUESTS

    srv: Scripted
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while line := await srv.read_request(reader):
            if "/hang" in line:
                await release.wait()
            writer.write(answer({"path": line.split()[1]}))
            await writer.drain()

    async with Scripted(handler) as srv:
        for wait_counts in (True, False):
            release.clear()
            api = ApiClient(ClusterConfig(server=srv.url, token="t"), wait_in_timeout=wait_counts)
            try:
                hung = [
                    asyncio.ensure_future(api.request("GET", "/hang", retry=False, timeout=30))
                    for _ in range(MAX_REQUESTS)
                ]
                await asyncio.sleep(0.5)  # every slot taken (the server holds them)
                queued = asyncio.ensure_future(api.request("GET", "/queued", retry=False, timeout=0.3))
                if wait_counts:
                    with pytest.raises(ApiError) as err:
                        await queued
                    assert (err.value.code, err.value.reason) == (0, NOT_SENT)
                    assert not any("/queued" in r for r in srv.requests), "it never left the client"
                else:
                    await asyncio.sleep(1.0)  # longer than its timeout, still waiting, not failed
                    assert not queued.done()
                    release.set()
                    assert await asyncio.wait_for(queued, 10) == {"path": "/queued"}
                release.set()
                await asyncio.wait_for(asyncio.gather(*hung), 10)
            finally:
                await api.close()
