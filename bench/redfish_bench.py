#!/usr/bin/env python3
"""Redfish benchmark: GET System requests/s, p50/p99 latency and RSS, vmbmc vs sushy-emulator.

    python bench/redfish_bench.py [--duration 5] [--tls] [--hypercorn] [--sushy-emulator PATH] [--json]

Each server runs in its own process (so its RSS is its own and the load generator does not share its
GIL); the load generator is a minimal HTTP/1.1 keep-alive client on raw asyncio streams, one
connection per concurrent client. Scenarios: 1 client, 16 concurrent clients; each server with HTTP
Basic auth on every request, and vmbmc with a session token (what Ironic sends after login) and
sushy-emulator `--fake` without authentication. sushy-emulator checks Basic auth against an htpasswd
file of bcrypt digests; ours uses cost 5, Apache `htpasswd -B`'s default. vmbmc's System comes from
the test double Machine (tests/unit/redfish), so the numbers measure the Redfish front end, not
KubeVirt. sushy-emulator is the one in this venv (`pip install -e '.[bench]'`) unless named.
`--tls`: both servers over HTTPS (a self-signed ECDSA certificate; every client connection pays its
handshake). `--hypercorn`: also the same app under hypercorn (when installed; not a dependency), the
ASGI server that was weighed against uvicorn for the connection hardening (docs/redfish.md).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "admin", "bench-password"


# --- servers -----------------------------------------------------------------------------------
def serve_vmbmc(port: int, tls: bool, server: str) -> None:
    """`--serve PORT`: the vmbmc Redfish server of one BMC on a test-double Machine."""
    sys.path.insert(0, str(ROOT / "tests" / "unit" / "redfish"))
    from machine_double import FakeMachine

    from vmbmc.auth import StaticCredentials
    from vmbmc.redfish import create_app, serve

    async def main() -> None:
        app = create_app(FakeMachine(), StaticCredentials(USER, PASSWORD), manager_info={"https": tls})
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        if server == "hypercorn":
            await serve_hypercorn(app, port, tls, stop)
            return
        running = await serve(app, "127.0.0.1", port, http=not tls)
        await stop.wait()
        await running.stop()

    asyncio.run(main())


async def serve_hypercorn(app, port: int, tls: bool, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    """The same app under hypercorn with its own deadlines (it has no connection caps)."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from vmbmc.redfish.tls import self_signed_certificate_apart

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = config.errorlog = None
    config.keep_alive_timeout, config.ssl_handshake_timeout = 15, 10
    config.alpn_protocols = ["http/1.1"]
    if tls:
        cert, key = await self_signed_certificate_apart(("127.0.0.1",))
        config.certfile, config.keyfile = str(cert), str(key)
    await serve(app, config, shutdown_trigger=stop.wait)


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2, context=client_tls()) as r:
                r.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB from /proc (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


# --- load generator ----------------------------------------------------------------------------
@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int
    reconnects: int
    server_cpu: float = float("nan")  # the server process's CPU seconds during the measured part

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    await reader.readexactly(int(headers.get("content-length", "0")))
    close = headers.get("connection", "").lower() == "close" or lines[0].startswith("HTTP/1.0")
    return status, close


async def _client(host: str, port: int, request: bytes, until: float, result: Result,
                  tls: ssl.SSLContext | None) -> None:
    reader = writer = None
    while time.perf_counter() < until:
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        started = time.perf_counter()
        writer.write(request)
        try:
            status, close = await _read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            writer = None
            result.reconnects += 1
            continue
        result.latencies.append(time.perf_counter() - started)
        result.requests += 1
        if status != 200:
            result.errors += 1
        if close:
            writer.close()
            writer = None
            result.reconnects += 1
    if writer is not None:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):  # a TLS close waits for the server's close_notify
            await asyncio.wait_for(writer.wait_closed(), 5)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(
    host: str, port: int, path: str, headers: dict[str, str], clients: int, duration: float, pid: int = 0,
    tls: bool = False,
) -> Result:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Accept: application/json",
        "Connection: keep-alive",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    context = client_tls() if tls else None
    warm = Result(0, 1, [], 0, 0)
    await asyncio.gather(
        *(_client(host, port, request, time.perf_counter() + 0.5, warm, context) for _ in range(clients))
    )
    await asyncio.sleep(0.5)  # the server has released the warm-up's connections (16 per address)
    result = Result(0, duration, [], 0, 0)
    cpu0 = cpu_seconds(pid) if pid else 0.0
    start = time.perf_counter()
    await asyncio.gather(
        *(_client(host, port, request, start + duration, result, context) for _ in range(clients))
    )
    result.seconds = time.perf_counter() - start
    if pid:
        result.server_cpu = cpu_seconds(pid) - cpu0
    return result


# --- runs --------------------------------------------------------------------------------------
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


Target = tuple[subprocess.Popen, int, str, dict[str, str]]


def vmbmc_target(auth: str, tls: bool, server: str = "uvicorn") -> Target:
    port = free_port()
    scheme = "https" if tls else "http"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--serve-with", server,
                             *(("--tls",) if tls else ())])
    wait_http(f"{scheme}://127.0.0.1:{port}/redfish/v1/")
    if auth == "basic":
        return proc, port, "/redfish/v1/Systems/vm1", BASIC
    body = json.dumps({"UserName": USER, "Password": PASSWORD}).encode()
    req = urllib.request.Request(
        f"{scheme}://127.0.0.1:{port}/redfish/v1/SessionService/Sessions",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, context=client_tls()) as r:
        token = r.headers["X-Auth-Token"]
    return proc, port, "/redfish/v1/Systems/vm1", {"X-Auth-Token": token}


def sushy_target(binary: str, auth: str, tls: bool) -> Target:
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="sushy-bench-"))
    scheme, tls_args = "http", []
    if tls:
        sys.path.insert(0, str(ROOT))
        from vmbmc.redfish.tls import self_signed_certificate_apart

        cert, key = asyncio.run(self_signed_certificate_apart(("127.0.0.1",)))
        scheme, tls_args = "https", ["--ssl-certificate", str(cert), "--ssl-key", str(key)]
    config = work / "emulator.conf"
    config.write_text("SUSHY_EMULATOR_AUTH_FILE = None\n")
    if auth == "basic":
        import bcrypt  # sushy-tools' own dependency

        digest = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
        (work / "htpasswd").write_text(f"{USER}:{digest}\n")
        config.write_text(f"SUSHY_EMULATOR_AUTH_FILE = {str(work / 'htpasswd')!r}\n")
    proc = subprocess.Popen(
        [binary, "--fake", "-i", "127.0.0.1", "-p", str(port), "--config", str(config), *tls_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    headers = BASIC if auth == "basic" else {}
    wait_http(f"{scheme}://127.0.0.1:{port}/redfish/v1/")
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/redfish/v1/Systems", headers=headers)
    with urllib.request.urlopen(req, context=client_tls()) as r:
        system = json.load(r)["Members"][0]["@odata.id"]
    return proc, port, system, headers


def run(name: str, target, duration: float, tls: bool) -> list[dict]:
    proc, port, path, headers = target
    rows = []
    try:
        for clients in (1, 16):
            result = asyncio.run(load("127.0.0.1", port, path, headers, clients, duration, proc.pid, tls))
            rss, hwm = rss_kib(proc.pid)
            rows.append(
                {
                    "server": name + (", TLS" if tls else ""),
                    "clients": clients,
                    "rps": round(result.rps),
                    "p50_ms": round(result.percentile(50), 2),
                    "p99_ms": round(result.percentile(99), 2),
                    "server_cpu_us_per_req": round(result.server_cpu / max(result.requests, 1) * 1e6),
                    "errors": result.errors,
                    "reconnects": result.reconnects,
                    "rss_mib": round(rss / 1024, 1),
                    "peak_rss_mib": round(hwm / 1024, 1),
                }
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-with", default="uvicorn", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario (default 5)")
    parser.add_argument("--tls", action="store_true", help="HTTPS for both servers")
    parser.add_argument("--hypercorn", action="store_true", help="also the same app under hypercorn")
    parser.add_argument(
        "--sushy-emulator",
        default=os.environ.get("SUSHY_EMULATOR", str(Path(sys.executable).with_name("sushy-emulator"))),
        help="sushy-emulator (sushy-tools 2.2.0: `pip install -e '.[bench]'`); skipped when missing",
    )
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args()
    tls, duration = args.tls, args.duration
    if args.serve:
        serve_vmbmc(args.serve, tls, args.serve_with)
        return 0
    rows = run("vmbmc, Basic auth", vmbmc_target("basic", tls), duration, tls)
    rows += run("vmbmc, session token", vmbmc_target("session", tls), duration, tls)
    if args.hypercorn:
        hypercorn = vmbmc_target("basic", tls, "hypercorn")
        rows += run("vmbmc app on hypercorn, Basic auth", hypercorn, duration, tls)
    if Path(args.sushy_emulator).exists():
        binary = args.sushy_emulator
        rows += run("sushy-emulator --fake, Basic auth", sushy_target(binary, "basic", tls), duration, tls)
        rows += run("sushy-emulator --fake, no auth", sushy_target(binary, "none", tls), duration, tls)
    else:
        print(f"# sushy-emulator not found at {args.sushy_emulator}; vmbmc only", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        "| server | clients | req/s | p50 ms | p99 ms | server CPU µs/req | errors | reconnects | RSS MiB "
        "| peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['clients']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} "
            f"| {r['server_cpu_us_per_req']} | {r['errors']} "
            f"| {r['reconnects']} | {r['rss_mib']} | {r['peak_rss_mib']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
