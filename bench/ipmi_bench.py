"""IPMI front end benchmark, vmbmc's kbmc side by side with the VirtualBMC stack in one run.

VirtualBMC is a pyghmi `Bmc` subclass driving libvirt. When virtualbmc is installed (`pip install -e
'.[bench]'`), VirtualBMC itself runs on libvirt's built-in `test:///default` driver (a libvirt call per
request, no hypervisor); the same pyghmi `Bmc` answering from memory runs too, as a lower bound.
vmbmc answers from the test-double Machine (no KubeVirt), so these measure the IPMI front ends.

Figures: whole-process `ipmitool -I lanplus ... power status` latency (what Ironic pays per
command), requests/s inside one session (`ipmitool exec`, Get Chassis Status) and over `--sessions`
concurrent sessions (one ipmitool process each) with the server's CPU time per request, RSS of a
process serving 1 BMC and 100 BMCs (VirtualBMC runs one process per BMC: 100 BMCs = 100 times one).

    python bench/ipmi_bench.py [--runs 30] [--requests 3000] [--sessions 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "admin", "bench-password"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- servers (run as child processes) ------------------------------------------------------
def serve_vmbmc(ports: list[int]) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "unit" / "redfish"))
    from machine_double import FakeMachine

    from vmbmc.auth import StaticCredentials
    from vmbmc.kbmc.server import IpmiServer

    async def main() -> None:
        servers = []
        for port in ports:
            servers.append(
                await IpmiServer(
                    FakeMachine(), StaticCredentials(USER, PASSWORD), host="127.0.0.1", port=port
                ).start()
            )
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_pyghmi(ports: list[int]) -> None:
    from pyghmi.ipmi.bmc import Bmc

    class MemoryBmc(Bmc):
        state = "off"

        def get_power_state(self) -> str:
            return self.state

        def power_on(self) -> int:
            self.state = "on"
            return 0

        def power_off(self) -> int:
            self.state = "off"
            return 0

    bmcs = [MemoryBmc({USER: PASSWORD}, port=port, address="127.0.0.1") for port in ports]
    print("ready", flush=True)
    bmcs[0].listen(timeout=30)


def serve_vbmc(ports: list[int]) -> None:
    """VirtualBMC itself (virtualbmc 3.3.0's `VirtualBMC`, what `vbmcd` runs per BMC) on libvirt's
    built-in test driver (`test:///default`, its domain "test"): a real libvirt call per request, no
    hypervisor."""
    from virtualbmc.vbmc import VirtualBMC

    bmc = VirtualBMC(USER, PASSWORD, ports[0], "127.0.0.1", "test", "test:///default")
    print("ready", flush=True)
    bmc.listen(timeout=30)


def start(kind: str, ports: list[int]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--ports", ",".join(map(str, ports))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line
    time.sleep(0.2)
    return proc


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- measurements ---------------------------------------------------------------------------
def ipmitool(port: int, *extra: str) -> list[str]:
    return [
        "ipmitool",
        "-I",
        "lanplus",
        *extra,
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        USER,
        "-P",
        PASSWORD,
    ]


def ipmitool_latency(port: int, runs: int) -> tuple[float, float]:
    cmd = [*ipmitool(port), "power", "status"]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        times.append((time.perf_counter() - t0) * 1000)
        assert "Chassis Power is" in out.stdout, out
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]


def session_throughput(port: int, count: int) -> float:
    """`ipmitool exec` runs a file of commands in one session: the same client for both servers
    (pyghmi's client picks suite 17, which pyghmi's server cannot serve)."""
    script = Path(f"/tmp/vmbmc-ipmi-bench-{os.getpid()}.txt")
    script.write_text("power status\n" * count)
    cmd = ipmitool(port, "-C", "3")
    try:
        t0 = time.perf_counter()
        out = subprocess.run([*cmd, "exec", str(script)], capture_output=True, text=True, timeout=600)
        elapsed = time.perf_counter() - t0
    finally:
        script.unlink(missing_ok=True)
    assert out.stdout.count("Chassis Power is") == count, out.stderr[-500:]
    return count / elapsed


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def concurrent_throughput(port: int, sessions: int, count: int, server: int) -> tuple[float, float]:
    """`sessions` ipmitool processes at once, each one session running `count` `power status`
    (what several Ironic conductors polling one BMC look like): requests/s over all of them, and the
    server's CPU time per request in µs (what the server itself spends, whoever is the bottleneck)."""
    script = Path(f"/tmp/vmbmc-ipmi-bench-{os.getpid()}-concurrent.txt")
    script.write_text("power status\n" * count)
    cmd = [*ipmitool(port, "-C", "3"), "exec", str(script)]
    try:
        cpu0, t0 = cpu_seconds(server), time.perf_counter()
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(sessions)
        ]
        outs = [p.communicate(timeout=600) for p in procs]
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(server) - cpu0
    finally:
        script.unlink(missing_ok=True)
    for out, err in outs:
        assert out.count("Chassis Power is") == count, err[-500:]
    total = sessions * count
    return total / elapsed, cpu / total * 1e6


def packet_crypto_us(packets: int = 20000, repeat: int = 7) -> float:
    """CPU µs to seal and open one RMCP+ payload's confidentiality (AES-CBC-128 with IPMI's pad, a
    fresh IV): the per-packet cost of vmbmc.kbmc.crypto alone, best of `repeat` runs, in this process
    (PYTHONPATH picks the checkout, e.g. the code before a change)."""
    import timeit

    from vmbmc.kbmc.crypto import SUITE_17, SessionKeys

    keys = SessionKeys.derive(SUITE_17, os.urandom(32))
    payload = bytes(20)  # a Get Chassis Status response message

    def one() -> None:
        assert keys.decrypt(keys.encrypt(payload)) == payload

    # process CPU time, not wall time: other work on the machine does not count
    return min(timeit.repeat(one, timer=time.process_time, number=packets, repeat=repeat)) / packets * 1e6


def measure(kind: str, runs: int, requests: int, sessions: int) -> dict[str, float]:
    port = free_port()
    proc = start(kind, [port])
    try:
        p50, p90 = ipmitool_latency(port, runs)
        rps = session_throughput(port, requests)
        concurrent, cpu_us = concurrent_throughput(port, sessions, max(1, requests // sessions), proc.pid)
        one = rss_mib(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    if kind == "vmbmc":
        ports = [free_port() for _ in range(100)]
        proc = start(kind, ports)
        try:
            for port in ports[::25]:  # they answer
                ipmitool_latency(port, 1)
            hundred = rss_mib(proc.pid)
        finally:
            proc.kill()
            proc.wait()
    else:
        hundred = one * 100  # one process per BMC, as VirtualBMC runs them
    return {
        "ipmitool_p50_ms": round(p50, 1),
        "ipmitool_p90_ms": round(p90, 1),
        "session_req_per_s": round(rps),
        f"{sessions}_sessions_req_per_s": round(concurrent),
        "server_cpu_us_per_req": round(cpu_us),
        "rss_1_bmc_mib": round(one, 1),
        "rss_100_bmcs_mib": round(hundred, 1),
        "mib_per_added_bmc": round((hundred - one) / 99, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--requests", type=int, default=3000, help="in-session requests")
    parser.add_argument("--sessions", type=int, default=8, help="concurrent sessions (default 8)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--packet-crypto", action="store_true", help="only the per-packet AES cost (encrypt + decrypt), µs"
    )
    parser.add_argument("--serve", choices=["vmbmc", "pyghmi", "vbmc"], help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        ports = [int(p) for p in args.ports.split(",")]
        {"vmbmc": serve_vmbmc, "pyghmi": serve_pyghmi, "vbmc": serve_vbmc}[args.serve](ports)
        return 0
    if args.packet_crypto:
        import vmbmc

        print(f"{packet_crypto_us():.2f} µs per packet (encrypt + decrypt), vmbmc from {vmbmc.__file__}")
        return 0
    kinds = ["vmbmc", "vbmc", "pyghmi"] if importlib.util.find_spec("virtualbmc") else ["vmbmc", "pyghmi"]
    results = {kind: measure(kind, args.runs, args.requests, args.sessions) for kind in kinds}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        keys = list(results["vmbmc"])
        print("| server | " + " | ".join(keys) + " |")
        print("|---" * (len(keys) + 1) + "|")
        names = {
            "vmbmc": "vmbmc kbmc",
            "vbmc": "VirtualBMC 3.3.0 (libvirt test driver)",
            "pyghmi": "pyghmi Bmc (VirtualBMC stack, in memory)",
        }
        for kind, r in results.items():
            name = names[kind]
            print(f"| {name} | " + " | ".join(str(r[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
