"""Over a real socket: gofish/bmclib-shaped requests, TLS, keep-alive and the server lifecycle."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import pytest
from redfish_servers import PASSWORD, USER, start

from vmbmc.auth import StaticCredentials
from vmbmc.machine.types import BootMode, BootTarget, PowerAction
from vmbmc.redfish import create_app, serve
from vmbmc.redfish.tls import self_signed_certificate

SYSTEM = "/redfish/v1/Systems/vm1"


async def gofish_session(client: httpx.AsyncClient) -> dict[str, str]:
    """gofish.Connect: POST the session, keep X-Auth-Token and Location."""
    r = await client.post(
        "/redfish/v1/SessionService/Sessions", json={"UserName": USER, "Password": PASSWORD}
    )
    assert r.status_code == 201
    return {"X-Auth-Token": r.headers["X-Auth-Token"], "Location": r.headers["Location"]}


async def test_gofish_flow(server, machine) -> None:
    async with httpx.AsyncClient(base_url=server.url, verify=False) as client:
        session = await gofish_session(client)
        auth = {"X-Auth-Token": session["X-Auth-Token"]}
        r = await client.get(SYSTEM, headers=auth)
        etag, boot = r.headers["ETag"], r.json()["Boot"]
        # The serial console is IPMI SOL on the advertised IPMI port.
        console = r.json()["SerialConsole"]
        assert console["MaxConcurrentSessions"] == 1
        assert (console["IPMI"]["ServiceEnabled"], console["IPMI"]["Port"]) == (True, 10623)
        # SetBoot: the whole Boot object it read, with new values and Go zero values
        boot.update(
            BootSourceOverrideTarget="Pxe",
            BootSourceOverrideEnabled="Once",
            BootSourceOverrideMode="UEFI",
            BootOrder=[],
            UefiTargetBootSourceOverride="",
            HttpBootUri="",
        )
        r = await client.patch(SYSTEM, json={"Boot": boot}, headers={**auth, "If-Match": etag})
        assert r.status_code == 204, r.text
        stored = (await client.get(SYSTEM, headers=auth)).json()["Boot"]
        assert (stored["BootSourceOverrideTarget"], stored["BootSourceOverrideMode"]) == ("Pxe", "UEFI")
        # Reset with the (now stale) ETag in If-Match: tolerated on actions
        r = await client.post(
            f"{SYSTEM}/Actions/ComputerSystem.Reset",
            json={"ResetType": "ForceRestart"},
            headers={**auth, "If-Match": etag},
        )
        assert r.status_code == 204, r.text
        # Logout through Location
        assert (await client.delete(session["Location"], headers=auth)).status_code == 204
        assert (await client.get(SYSTEM, headers=auth)).status_code == 401
    # the restart used the Once override up; the mode stays
    assert machine.boot_override().target is BootTarget.NONE
    assert machine.boot_override().mode is BootMode.UEFI
    assert [a for a, _ in machine.calls] == [PowerAction.RESET]


async def test_keep_alive_and_basic(server) -> None:
    assert server.service_url == server.url + "/redfish/v1"
    async with httpx.AsyncClient(base_url=server.url, verify=False, auth=(USER, PASSWORD)) as client:
        for _ in range(20):
            assert (await client.get(SYSTEM)).status_code == 200


async def test_tls_certificate_from_files(machine, tmp_path) -> None:
    cert, key = self_signed_certificate(names=("bmc.test",), directory=tmp_path)
    app = create_app(machine, StaticCredentials(USER, PASSWORD))
    srv = await serve(app, "127.0.0.1", 0, tls_cert=str(cert), tls_key=str(key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        async with httpx.AsyncClient(base_url=srv.url, verify=context) as client:
            assert (await client.get("/redfish/v1/")).status_code == 200
    finally:
        await srv.stop()


async def test_stop_frees_the_port_and_removes_generated_cert(machine) -> None:
    srv = await start(machine, http=False)
    tls_dir = srv._tls_dir
    assert tls_dir is not None and (tls_dir / "tls.key").exists()
    port = srv.port
    async with httpx.AsyncClient(base_url=srv.url, verify=False) as client:
        assert (await client.get("/redfish/v1/")).status_code == 200
        await asyncio.wait_for(srv.stop(), 15)  # with a keep-alive connection open
    assert not tls_dir.exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the port is free again


async def test_port_in_use_raises(machine) -> None:
    srv = await start(machine, http=True)
    try:
        with pytest.raises(OSError):
            await serve(create_app(machine, StaticCredentials("a", "b")), "127.0.0.1", srv.port, http=True)
    finally:
        await srv.stop()


async def test_no_nagle_delay_on_keep_alive(machine) -> None:
    """Sequential keep-alive requests must not wait for the client's delayed ACK (~40 ms each): every
    connection the server accepts has TCP_NODELAY set (checked on the socket, not timed: the suite runs
    on loaded machines)."""
    srv = await start(machine, http=True)
    try:
        async with httpx.AsyncClient(base_url=srv.url, auth=(USER, PASSWORD)) as client:
            for _ in range(3):
                assert (await client.get(SYSTEM)).status_code == 200
            connections = list(srv._server.server_state.connections)
            assert connections
            for connection in connections:
                sock = connection.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        await srv.stop()


async def test_weak_tls_refused(https_server) -> None:
    weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    weak.check_hostname, weak.verify_mode = False, ssl.CERT_NONE
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("ECDHE-ECDSA-AES128-SHA:AES128-SHA")  # CBC with SHA-1
    with pytest.raises((ssl.SSLError, ConnectionError)):  # handshake alert or reset
        _, writer = await asyncio.open_connection("127.0.0.1", https_server.port, ssl=weak)
        writer.close()
    strong = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    strong.check_hostname, strong.verify_mode = False, ssl.CERT_NONE
    strong.maximum_version = ssl.TLSVersion.TLSv1_2
    _, writer = await asyncio.open_connection("127.0.0.1", https_server.port, ssl=strong)
    writer.close()


STANDALONE = """
import sys
sys.path.insert(0, {double!r})
from machine_double import FakeMachine
from vmbmc.auth import StaticCredentials
from vmbmc.redfish import create_app, run
run(create_app(FakeMachine(), StaticCredentials("a", "b")), "127.0.0.1", {port}, http=True)
"""


async def test_standalone_run_stops_on_sigterm() -> None:
    import signal
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    double = str(Path(__file__).parents[2] / "unit" / "redfish")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STANDALONE.format(double=double, port=port)
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    r = await client.get(f"http://127.0.0.1:{port}/redfish/v1/")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
