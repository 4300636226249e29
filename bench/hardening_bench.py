"""Floods and stalls against one BMC (IPMI and HTTPS Redfish on the test-double Machine, in a child
process), with a legitimate client measured throughout.

1. A spoofed Open Session flood (`--rate` datagrams/s from 500 loopback addresses 127.77.x.y) while
   `ipmitool -I lanplus ... chassis power status` runs back to back, then 20 at once: the flood's
   achieved rate, the legitimate client's latency and its longest unanswered interval (from the
   start of a command to its successful answer, retries included), failures.
2. `--stalls` HTTPS connections from 10 addresses that send half a header and wait, then as many
   bare TCP connects without a TLS handshake: the server's RSS before, at the peak and after the
   server closed them, how many it refused, evicted and timed out, and a legitimate GET's latency
   while they are open.

    python bench/hardening_bench.py [--rate 1000] [--seconds 20] [--stalls 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
USER, PASSWORD = "admin", "bench-password"


# --- the BMC (child process) -------------------------------------------------------------------
def serve() -> None:
    sys.path.insert(0, str(ROOT / "tests" / "unit" / "redfish"))
    from machine_double import FakeMachine

    from vmbmc.auth import LoginLimiter, StaticCredentials
    from vmbmc.kbmc.server import IpmiServer
    from vmbmc.redfish import create_app
    from vmbmc.redfish import serve as serve_redfish

    async def main() -> None:
        machine, creds, limiter = FakeMachine(), StaticCredentials(USER, PASSWORD), LoginLimiter()
        ipmi = await IpmiServer(machine, creds, host="127.0.0.1", port=0, limiter=limiter).start()
        redfish = await serve_redfish(create_app(machine, creds, limiter=limiter), "127.0.0.1", 0)
        print(json.dumps({"ipmi": ipmi.port, "redfish": redfish.port}), flush=True)

        async def report() -> None:  # the listener's counters, on request (a line on stdin)
            loop = asyncio.get_running_loop()
            while await loop.run_in_executor(None, sys.stdin.readline):
                g = redfish.guard
                counts = {"open": len(g), "refused": g.refused, "evicted": g.evicted,
                          "timed_out": g.timed_out}
                print(json.dumps(counts | {"ipmi_evicted": ipmi.lan.table.evicted}), flush=True)

        await report()

    asyncio.run(main())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- 1. the Open Session flood -----------------------------------------------------------------
def open_session_request(console_id: int) -> bytes:
    body = bytes((0, 0, 0, 0)) + console_id.to_bytes(4, "little")
    body += bytes((0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 8, 1, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0))
    return bytes((6, 0, 0xFF, 7, 6, 0x10)) + bytes(8) + len(body).to_bytes(2, "little") + body


def flood(port: int, rate: int, seconds: float, stop: threading.Event, out: dict[str, float]) -> None:
    socks = []
    for i in range(500):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.77.{i // 200}.{i % 200 + 1}", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        socks.append(s)
    sent, started = 0, time.monotonic()
    while not stop.is_set() and time.monotonic() - started < seconds:
        request = open_session_request((sent * 2654435761) & 0xFFFFFFFF | 1)
        socks[sent % 500].sendto(request, ("127.0.0.1", port))
        sent += 1
        lag = started + sent / rate - time.monotonic()
        if lag > 0:
            time.sleep(lag)
    out["sent"], out["seconds"] = sent, time.monotonic() - started
    for s in socks:
        s.close()


def ipmitool(port: int) -> bool:
    cmd = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port), "-U", USER, "-P", PASSWORD,
           "chassis", "power", "status"]
    return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0


def legit_loop(port: int, seconds: float) -> dict[str, float]:
    """ipmitool back to back for `seconds`; latencies and the longest wait for a successful answer."""
    latencies, failures, longest = [], 0, 0.0
    end = time.monotonic() + seconds
    waiting_since = time.monotonic()
    while time.monotonic() < end:
        started = time.monotonic()
        ok = ipmitool(port)
        now = time.monotonic()
        if ok:
            latencies.append(now - started)
            longest = max(longest, now - waiting_since)
            waiting_since = now
        else:
            failures += 1
    return {"commands": len(latencies), "failures": failures,
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else 0,
            "max_ms": round(max(latencies) * 1000, 1) if latencies else 0,
            "longest_unanswered_ms": round(longest * 1000, 1)}


def twenty_at_once(port: int) -> dict[str, float]:
    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: ipmitool(port), range(20)))
    return {"ok": sum(results), "of": 20, "seconds": round(time.monotonic() - started, 2)}


def scenario_flood(ports: dict[str, int], rate: int, seconds: float) -> dict[str, object]:
    baseline = legit_loop(ports["ipmi"], 3)
    stop, sent = threading.Event(), {}
    thread = threading.Thread(target=flood, args=(ports["ipmi"], rate, seconds + 10, stop, sent))
    thread.start()
    time.sleep(1)
    redfish_ms: list[float] = []
    done = threading.Event()

    def redfish_loop() -> None:  # a Redfish client on the same BMC meanwhile, every 200 ms
        while not done.wait(0.2):
            redfish_ms.append(legit_get_ms(ports["redfish"]))

    poller = threading.Thread(target=redfish_loop)
    poller.start()
    during = legit_loop(ports["ipmi"], seconds)
    concurrent = twenty_at_once(ports["ipmi"])
    done.set()
    poller.join()
    stop.set()
    thread.join()
    return {"baseline": baseline, "during_flood": during, "twenty_concurrent_during_flood": concurrent,
            "redfish_get_during_flood": {"requests": len(redfish_ms), "max_ms": max(redfish_ms, default=0),
                                         "p50_ms": statistics.median(redfish_ms) if redfish_ms else 0},
            "flood_rate": round(sent["sent"] / sent["seconds"])}


# --- 2. stalled HTTPS connections --------------------------------------------------------------
def legit_get_ms(port: int) -> float:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode())
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as tcp, context.wrap_socket(tcp) as tls:
        tls.sendall(b"GET /redfish/v1/Systems HTTP/1.1\r\nHost: bmc\r\nAuthorization: Basic " + auth
                    + b"\r\nConnection: close\r\n\r\n")
        head = tls.recv(64)
    assert head.startswith(b"HTTP/1.1 200"), head
    return round((time.monotonic() - started) * 1000, 1)


def scenario_stalls(child: subprocess.Popen[str], ports: dict[str, int], stalls: int) -> dict[str, object]:
    def counters() -> dict[str, int]:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("\n")
        child.stdin.flush()
        return json.loads(child.stdout.readline())

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    before = rss_mib(child.pid)
    peak, sampling = [before], threading.Event()

    def sample() -> None:  # the peak, every 50 ms, until the server has closed everything
        while not sampling.wait(0.05):
            peak.append(rss_mib(child.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    held: list[socket.socket] = []
    for i in range(stalls):
        tcp = socket.socket()
        tcp.bind((f"127.0.60.{i % 10 + 1}", 0))
        try:
            tcp.connect(("127.0.0.1", ports["redfish"]))
            tls = context.wrap_socket(tcp)
            tls.sendall(b"GET /redfish/v1/Systems HTTP/1.1\r\nHost: bmc\r\nAuthor")
            held.append(tls)
        except OSError:
            tcp.close()  # refused or closed during the handshake: the cap at work
    for i in range(stalls):  # bare TCP, no TLS handshake
        tcp = socket.socket()
        tcp.bind((f"127.0.61.{i % 10 + 1}", 0))
        try:
            tcp.connect(("127.0.0.1", ports["redfish"]))
            held.append(tcp)
        except OSError:
            tcp.close()
    get_ms = legit_get_ms(ports["redfish"])
    open_counters = counters()
    deadline = time.monotonic() + 60
    while counters()["open"] and time.monotonic() < deadline:
        time.sleep(0.5)
    closed_after = round(60 - (deadline - time.monotonic()), 1)
    time.sleep(1)
    sampling.set()
    sampler.join()
    after = rss_mib(child.pid)
    for s in held:
        s.close()
    return {"stalls_tls": stalls, "bare_tcp": stalls, "rss_before_mib": round(before, 1),
            "rss_peak_mib": round(max(peak), 1), "rss_after_mib": round(after, 1),
            "legit_get_ms_while_stalled": get_ms, "server_counters": open_counters | counters(),
            "all_closed_within_s": closed_after}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stalls", type=int, default=300)
    parser.add_argument("--only", choices=("flood", "stalls"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        result: dict[str, object] = {}
        if args.only in (None, "flood"):
            result["flood"] = scenario_flood(ports, args.rate, args.seconds)
        if args.only in (None, "stalls"):
            result["stalls"] = scenario_stalls(child, ports, args.stalls)
    finally:
        child.terminate()
        child.wait(10)
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
