"""Stalled, excess and malformed connections against a real HTTPS listener (vmbmc.redfish.connections):
the server closes stalls after their deadline, caps connections per address and in total while a
legitimate client is still served, and answers malformed HTTP with a Redfish JSON 400."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from redfish_servers import PASSWORD, USER

from vmbmc.auth import LoginLimiter, StaticCredentials
from vmbmc.redfish import RedfishServer, create_app, serve
from vmbmc.redfish.connections import ConnectionLimits

LIMITS = ConnectionLimits(tls_handshake=1.0, header=1.0, body=1.0, keep_alive=1, per_client=4, total=12)
HALF_HEADER = b"GET /redfish/v1/Systems HTTP/1.1\r\nHost: bmc\r\nAuthorization: Basic"


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


@pytest.fixture
async def https(machine) -> AsyncIterator[RedfishServer]:
    async with listening(machine, LIMITS) as server:
        yield server


@contextlib.asynccontextmanager
async def listening(machine, limits: ConnectionLimits) -> AsyncIterator[RedfishServer]:
    app = create_app(machine, StaticCredentials(USER, PASSWORD), limiter=LoginLimiter(),
                     manager_info={"https": True, "version": "test"})
    server = await serve(app, "127.0.0.1", 0, limits=limits)
    try:
        yield server
    finally:
        await server.stop()


async def connect(server: RedfishServer, source: str, *, tls: bool = True
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(server.host, server.port, ssl=client_tls() if tls else None,
                                local_addr=(source, 0), server_hostname="" if tls else None),
        10,
    )


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True once the server ended the connection (anything it still sent is read and ignored)."""
    try:
        await asyncio.wait_for(reader.read(), within)
        return True
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


async def legit_get(server: RedfishServer) -> int:
    async with httpx.AsyncClient(base_url=server.url, verify=False, timeout=10) as client:
        return (await client.get("/redfish/v1/Systems", auth=(USER, PASSWORD))).status_code


async def test_stalled_half_header_connections_are_closed_after_the_deadline(https) -> None:
    streams = []
    for i in range(8):  # two addresses, four each
        reader, writer = await connect(https, f"127.0.31.{i % 2 + 1}")
        writer.write(HALF_HEADER)
        await writer.drain()
        streams.append((reader, writer))
    assert await legit_get(https) == 200  # served while the stalls are open
    results = await asyncio.gather(*(closed_by_server(r, 10) for r, _ in streams))
    assert all(results)
    assert https.guard.timed_out >= 8
    for _ in range(100):  # bounded: 10 s
        if len(https.guard) == 0:
            break
        await asyncio.sleep(0.1)
    assert len(https.guard) == 0
    for _, writer in streams:
        writer.close()


async def test_bare_tcp_without_a_tls_handshake_is_closed(https) -> None:
    reader, writer = await connect(https, "127.0.32.1", tls=False)
    assert await closed_by_server(reader, 10)  # the handshake deadline, not asyncio's 60 s
    writer.close()


async def test_per_address_cap_refuses_the_excess_and_total_cap_evicts_stalls(machine) -> None:
    limits = dataclasses.replace(LIMITS, tls_handshake=60.0)  # the stalls stay until evicted
    async with listening(machine, limits) as https:
        held = [await connect(https, "127.0.33.1", tls=False) for _ in range(limits.per_client)]
        extra_reader, extra_writer = await connect(https, "127.0.33.1", tls=False)
        assert await closed_by_server(extra_reader, 5)  # the fifth from one address is closed at once
        assert https.guard.refused == 1 and https.guard.evicted == 0
        # fill the rest of the total from other addresses; a legitimate client still gets in
        others = range(limits.total - limits.per_client)
        more = [await connect(https, f"127.0.34.{i + 1}", tls=False) for i in others]
        assert len(https.guard) == limits.total
        assert await legit_get(https) == 200
        assert https.guard.evicted >= 1 and https.guard.refused == 1
        assert await closed_by_server(held[0][0], 5)  # the oldest stall of the address holding the most
        for _, writer in [*held, *more, (extra_reader, extra_writer)]:
            writer.close()


async def test_malformed_http_gets_a_redfish_json_400_and_one_log_line(https, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="vmbmc.redfish.connections")
    for _ in range(3):
        reader, writer = await connect(https, "127.0.35.1")
        writer.write(b"GET /redfish/v1 HTTP/1.1\r\nHost bmc\r\n\r\n")  # a header line without a colon
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 400 Bad Request"
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        assert headers["content-type"].startswith("application/json")
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert headers["odata-version"] == "4.0"
        error = json.loads(body)["error"]
        assert error["code"] == "Base.1.16.0.GeneralError" and error["@Message.ExtendedInfo"]
    logged = [r for r in caplog.records if r.getMessage() == "malformed HTTP request"]
    assert len(logged) == 1  # rate-limited: once per address per minute
    assert https.guard.malformed == 3
    assert not [r for r in caplog.records if "Invalid HTTP request" in r.getMessage()]


async def test_slow_body_is_closed_and_the_app_never_sees_half_a_request(https, machine) -> None:
    reader, writer = await connect(https, "127.0.36.1")
    writer.write(b"POST /redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset HTTP/1.1\r\nHost: bmc\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ResetType\"")
    await writer.drain()
    assert await closed_by_server(reader, 10)
    writer.close()
    assert machine.calls == []


async def test_idle_keep_alive_connection_is_closed(https) -> None:
    reader, writer = await connect(https, "127.0.37.1")
    writer.write(b"GET /redfish/v1 HTTP/1.1\r\nHost: bmc\r\n\r\n")
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert first.startswith(b"HTTP/1.1 200")
    assert await closed_by_server(reader, 10)  # keep_alive=1 s
    writer.close()


def request_with_the_finished_message(host: str, port: int, request: bytes) -> bytes:
    """A TLS 1.3 client that sends `request` in the same TCP write as its handshake's Finished
    message (TLS 1.3 allows it), then reads the answer's head. Memory BIOs make that exact."""
    context = client_tls()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing)
    with socket.create_connection((host, port), timeout=10) as sock:
        for _ in range(20):  # bounded: a handshake takes two round trips
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536) or b"")
        tls.write(request)
        sock.sendall(outgoing.read())  # the Finished message and the request together
        answer = b""
        for _ in range(50):  # bounded by the socket timeout too
            try:
                answer += tls.read(65536)
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                if not data:
                    break
                incoming.write(data)
            if b"\r\n\r\n" in answer:
                break
        return answer


async def test_a_request_sent_along_with_the_tls_finished_message_is_answered(https) -> None:
    request = b"GET /redfish/v1 HTTP/1.1\r\nHost: bmc\r\n\r\n"
    answer = await asyncio.to_thread(request_with_the_finished_message, https.host, https.port, request)
    assert answer.startswith(b"HTTP/1.1 200 ")  # not dropped while the TLS layer was being put in place
    assert https.guard.timed_out == 0


async def test_plain_http_listener_has_the_same_deadlines_and_answers(machine) -> None:
    app = create_app(machine, StaticCredentials(USER, PASSWORD), limiter=LoginLimiter(),
                     manager_info={"https": False, "version": "test"})
    server = await serve(app, "127.0.0.1", 0, http=True, limits=LIMITS)
    try:
        stalled_reader, stalled = await connect(server, "127.0.38.1", tls=False)
        stalled.write(HALF_HEADER)
        await stalled.drain()
        reader, writer = await connect(server, "127.0.38.2", tls=False)
        writer.write(b"GET /redfish/v1 HTTP/1.1\r\nHost: bmc\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
        writer.close()
        assert await closed_by_server(stalled_reader, 10)
        stalled.close()
        assert server.guard.timed_out >= 1
    finally:
        await server.stop()


async def test_pipelined_requests_on_one_connection_are_all_answered(https) -> None:
    reader, writer = await connect(https, "127.0.39.1")
    get = b"GET /redfish/v1 HTTP/1.1\r\nHost: bmc\r\n\r\n"
    reset = (b"POST /redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset HTTP/1.1\r\nHost: bmc\r\n"
             b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")  # no credentials: 401
    writer.write(get + reset + get)
    await writer.drain()
    statuses = []
    for _ in range(3):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode().split("\r\n")
        length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                      if k.lower() == "content-length")
        await asyncio.wait_for(reader.readexactly(length), 10)
        statuses.append(lines[0])
    writer.close()
    assert statuses == ["HTTP/1.1 200 OK", "HTTP/1.1 401 Unauthorized", "HTTP/1.1 200 OK"]
    assert https.guard.malformed == 0


async def test_a_request_waiting_behind_a_stalled_server_loop_is_answered(machine) -> None:
    """The deadline judges the client, not our loop: here the server's loop (this test's) is blocked
    past the header deadline while a whole request waits unread; it is answered, not cut."""
    server = await serve(create_app(machine, StaticCredentials(USER, PASSWORD), limiter=LoginLimiter(),
                                    manager_info={"https": False, "version": "test"}),
                         "127.0.0.1", 0, http=True, limits=LIMITS)
    try:
        reader, writer = await connect(server, "127.0.41.1", tls=False)
        for _ in range(100):  # bounded: 10 s, until the server has accepted it (its deadline runs)
            if len(server.guard):
                break
            await asyncio.sleep(0.1)
        writer.write(b"GET /redfish/v1 HTTP/1.1\r\nHost: bmc\r\n\r\n")
        time.sleep(LIMITS.header + 1.5)  # the stall under test
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert server.guard.timed_out == 0
        writer.close()
    finally:
        await server.stop()
