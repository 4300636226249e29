"""The API client's transport (httpx2 under vmbmc.k8s.client) against scripted servers on 127.0.0.1:
keep-alive, what is sent again when a connection drops (only idempotent calls), what is retried after an
error answer, bodies in every framing, watch streams, and calls that never leave the pool."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from lightkube import KubeConfig
from lightkube.config.models import Cluster, User

from vmbmc.k8s.client import MAX_REQUESTS, NOT_SENT, RETRY_DELAYS, WATCH_OPEN, ApiClient, ApiError

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


def api_for(url: str, token: str = "t", *, wait_in_timeout: bool = True) -> ApiClient:
    cfg = KubeConfig.from_one(cluster=Cluster(server=url), user=User(token=token)).get()
    assert cfg is not None
    return ApiClient(cfg, wait_in_timeout=wait_in_timeout)


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
            method, target, _ = srv.requests[0].split()
            assert method == "GET" and target.startswith("/x/0?labelSelector=")
            assert parse_qs(urlsplit(target).query) == {"labelSelector": ["a in (b,c)"]}
        finally:
            await api.close()
    assert srv.connections == 1


RESTART = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/vm/restart"
GUARDED = {"metadata": {"resourceVersion": "7"}, "status": {"x": 1}}


@pytest.mark.parametrize(
    ("method", "path", "body", "sent_again"),
    [
        ("GET", "/b", None, True),
        ("PATCH", "/b/status", GUARDED, True),  # guarded by resourceVersion: a second one is refused
        ("DELETE", "/b", {"preconditions": {"uid": "u"}}, True),
        ("PUT", RESTART, {}, False),  # KubeVirt's restart: never twice
        ("POST", "/b", {"metadata": {"name": "n"}}, False),  # a create
        ("PATCH", "/b", {"spec": {"x": 1}}, False),  # an unguarded patch
    ],
)
async def test_a_dropped_kept_alive_connection(method: str, path: str, body: Any, sent_again: bool) -> None:
    """The server answers the first request of each connection, then reads the next one and hangs up
    without a word (a keep-alive timeout racing our request, or a crash after reading it): an idempotent
    call goes again on a new connection; any other ends with no answer, sent once (ConnectionError: it
    may have been carried out, unlike NOT_SENT)."""
    srv: Scripted

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)
        writer.write(answer({"n": n}))
        await writer.drain()
        await srv.read_request(reader)  # and close

    async with Scripted(handler) as srv:
        api = api_for(srv.url)
        try:
            assert await api.request("GET", "/a", retry=False) == {"n": 1}
            if sent_again:
                assert await api.request(method, path, body=body, retry=True) == {"n": 2}
            else:
                with pytest.raises(ApiError) as err:
                    await api.request(method, path, body=body, retry=True)
                assert (err.value.code, err.value.reason) == (0, "ConnectionError")
        finally:
            await api.close()
    second = [r for r in srv.requests if r.split()[1].split("?")[0] == path]
    assert len(second) == (2 if sent_again else 1), srv.requests
    assert second[0].split()[0] == method


@pytest.mark.parametrize(("method", "path", "sent"), [("GET", "/x", 2), ("PUT", RESTART, 1)])
async def test_a_new_connection_closed_without_answer_is_an_error(method: str, path: str, sent: int) -> None:
    """No answer at all: a read is sent once more (on a fresh connection), KubeVirt's restart is not."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readline()

    async with Scripted(handler) as srv:
        api = api_for(srv.url)
        try:
            with pytest.raises(ApiError) as err:
                await api.request(method, path, body={} if method == "PUT" else None, retry=False)
        finally:
            await api.close()
    assert (err.value.code, err.value.reason) == (0, "ConnectionError") and srv.connections == sent


async def test_chunked_and_close_delimited_bodies() -> None:
    srv: Scripted
    payload = {"items": ["x" * 70_000, "y"]}
    raw = json.dumps(payload).encode()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        line = await srv.read_request(reader)
        assert line is not None
        if "/chunked" in line:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (raw[:5], raw[5:40_000], raw[40_000:]):
                writer.write(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n")
            writer.write(b"0\r\nX-Trailer: yes\r\n\r\n")
            writer.write(answer({"after": "chunked"}) if await srv.read_request(reader) else b"")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + raw)
        await writer.drain()

    async with Scripted(handler) as srv:
        api = api_for(srv.url)
        try:
            assert await api.request("GET", "/chunked") == payload
            assert await api.request("GET", "/again") == {"after": "chunked"}
            assert await api.request("GET", "/until-close") == payload
        finally:
            await api.close()
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


async def test_error_answers_are_retried_only_when_that_cannot_repeat_an_action() -> None:
    """A 5xx answer to a read is retried (RETRY_DELAYS); to KubeVirt's restart or a create it is not (the
    API server may have carried it out); a 429 (rejected before any work) is retried for any call."""
    srv: Scripted
    status = {"kind": "Status", "reason": "InternalError", "message": "boom", "code": 500}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while line := await srv.read_request(reader):
            code = 429 if "/throttled" in line else 500
            raw = json.dumps({**status, "code": code}).encode()
            writer.write(f"HTTP/1.1 {code} X\r\nContent-Length: {len(raw)}\r\n\r\n".encode() + raw)
            await writer.drain()

    async with Scripted(handler) as srv:
        api = api_for(srv.url)
        try:
            for method, path in (
                ("GET", "/read"),
                ("PUT", RESTART),
                ("POST", "/create"),
                ("POST", "/throttled"),
            ):
                with pytest.raises(ApiError) as err:
                    await api.request(method, path, body=None if method == "GET" else {})
                assert err.value.code in (429, 500) and err.value.message == "boom"
        finally:
            await api.close()
    count = {
        p: sum(1 for r in srv.requests if r.split()[1] == p)
        for p in ("/read", RESTART, "/create", "/throttled")
    }
    tries = len(RETRY_DELAYS) + 1
    assert count == {"/read": tries, RESTART: 1, "/create": 1, "/throttled": tries}


async def test_calls_that_never_left_are_not_sent() -> None:
    """No connection (refused), or a header the HTTP library refuses to write (CR/LF in a token from a
    kubeconfig): NOT_SENT, and the server saw nothing."""
    srv: Scripted

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await srv.read_request(reader)

    async def unsent(api: ApiClient) -> None:
        try:
            with pytest.raises(ApiError) as err:
                await api.request("PUT", RESTART, body={}, retry=False)
            assert (err.value.code, err.value.reason) == (0, NOT_SENT)
        finally:
            await api.close()

    async with Scripted(handler) as srv:
        url = srv.url
        await unsent(api_for(url, token="t\r\nX-Injected: 1"))
    assert srv.requests == []
    await unsent(api_for(url))  # the server is gone: connection refused


async def test_a_call_that_times_out_waiting_for_a_connection_was_not_sent() -> None:
    """Every pooled connection held by hung calls: a call whose timeout counts its wait (the kbmc's)
    gives up unsent (NOT_SENT: it may be sent again, it cannot have reached the server); a call whose
    wait does not count (the controller's reconciles) waits its turn and is answered once one frees."""
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
            api = api_for(srv.url, wait_in_timeout=wait_counts)
            try:
                hung = [
                    asyncio.ensure_future(api.request("GET", "/hang", retry=False, timeout=30))
                    for _ in range(MAX_REQUESTS)
                ]
                await asyncio.sleep(0.5)  # every connection taken (the server holds them)
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
