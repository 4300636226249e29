"""A real `vmbmc kbmc` under attack: the failed-login hold on IPMI 1.5 and RMCP+, a spoofed flood of
Open Session requests while real ipmitool clients log in (one, and 20 at once from one address), and
nmap's cipher-zero verdict.

Forged source addresses: on Linux every 127.x.y.z is a loopback address a socket may bind, so the
flood comes from many addresses without raw sockets.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from kbmc_process import PASSWORD, USER, KbmcProcess, serve_new_bmc
from machine_cluster import Cluster

from tests.prometheus_text import sample
from tests.rmcp_client import Console, ipmi_message, md5_code, udp_transport
from vmbmc_devcluster.emulator.harness import EmulatorThread

HOLD_DELAY = 2.0
FLOOD_RATE = 1000  # Open Session datagrams a second
ONE_TRY = ("-R", "1", "-N", "5")  # ipmitool: one try, 5 s timeout (so a 2 s delay is seen, not retried)


@pytest.fixture
def fresh(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> Iterator[KbmcProcess]:
    """A kbmc of its own: a fresh failed-login count and session table."""
    proc = serve_new_bmc(emu, cluster, tmp_path, "hard").kbmc
    yield proc
    proc.stop()


@pytest.fixture
def fresh_redfish(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> Iterator[tuple[KbmcProcess, str]]:
    """A kbmc of its own serving HTTPS Redfish too."""
    served = serve_new_bmc(emu, cluster, tmp_path, "hardrf", redfish="https")
    yield served.kbmc, served.redfish
    served.kbmc.stop()


def delayed_count(kbmc: KbmcProcess, protocol: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{kbmc.health_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sample(text, "vmbmc_login_failures_delayed_total", protocol=protocol) or 0.0


def timed(fn) -> tuple[object, float]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    out = fn()
    return out, time.monotonic() - started


# --- IPMI 1.5 ---------------------------------------------------------------------------------------
def v15_wrong_activate(kbmc: KbmcProcess, source: str = "127.0.0.1") -> int | None:
    """Get Session Challenge for the right user, then Activate Session with an auth code made from a
    wrong password: a failed login. Returns the completion code (None: no answer in 10 s)."""
    send = udp_transport(kbmc.host, kbmc.port, timeout=10, source=source)
    challenge = ipmi_message(0x06, 0x39, bytes((2,)) + USER.encode().ljust(16, b"\0"))
    reply = send(b"\x06\x00\xff\x07" + bytes(9) + bytes((len(challenge),)) + challenge)
    assert reply is not None and reply[4 + 10 + 6] == 0, reply
    msg = reply[14:]
    sid, nonce = struct.unpack("<I", msg[7:11])[0], msg[11:27]
    activate = ipmi_message(0x06, 0x3A, bytes((2, 4)) + nonce + struct.pack("<I", 1))
    head = bytes((2,)) + struct.pack("<II", 0, sid) + md5_code("wrong-password!!", sid, activate, 0)
    reply = send(b"\x06\x00\xff\x07" + head + bytes((len(activate),)) + activate)
    return None if reply is None else reply[4 + 26 + 6]


def test_ipmi15_held_address_waits_on_failures_only(fresh: KbmcProcess) -> None:
    for _ in range(5):
        assert v15_wrong_activate(fresh) == 0xD4  # insufficient privilege: refused at once
    assert delayed_count(fresh, "lan") == 0
    code, took = timed(lambda: v15_wrong_activate(fresh))
    assert code == 0xD4 and took >= HOLD_DELAY * 0.95  # the sixth waits for the hold's delay
    assert delayed_count(fresh, "lan") == 1
    # correct credentials from the same address: answered at once (not on the delayed path)
    ok = fresh.ipmitool("chassis", "power", "status", interface="lan", extra=ONE_TRY)
    assert ok.returncode == 0 and "Chassis Power is" in ok.stdout
    assert delayed_count(fresh, "lan") == 1
    # a held address's wrong password through ipmitool is still refused, late
    bad = fresh.ipmitool("chassis", "power", "status", interface="lan", password="wrong-pass", extra=ONE_TRY)
    assert bad.returncode != 0 and delayed_count(fresh, "lan") == 2
    # another address is not held
    assert v15_wrong_activate(fresh, source="127.0.41.1") == 0xD4
    assert delayed_count(fresh, "lan") == 2
    assert fresh.logs().count("failed-login limit reached") == 1


# --- RMCP+ ------------------------------------------------------------------------------------------
def test_rmcpplus_held_address_waits_on_unknown_users_and_bad_rakp3(fresh: KbmcProcess) -> None:
    def console(user: str = USER, password: str = PASSWORD) -> Console:
        return Console(udp_transport(fresh.host, fresh.port, timeout=10), user, password, 17)

    for _ in range(5):
        c = console("nobody")
        assert c.open() == 0
        rakp2 = c.rakp1()
        assert rakp2 is not None and rakp2[1] == 0x0D  # unauthorized name
    assert delayed_count(fresh, "lanplus") == 0
    c = console("nobody")
    assert c.open() == 0
    rakp2, took = timed(c.rakp1)
    assert rakp2 is not None and rakp2[1] == 0x0D and took >= HOLD_DELAY * 0.95  # type: ignore[index]
    c = console()
    assert c.open() == 0 and c.rakp1()[1] == 0  # type: ignore[index]
    c.derive()
    rakp4, took = timed(lambda: c.rakp3(code=bytes(32)))  # a bad RAKP 3 HMAC
    assert rakp4 is not None and rakp4[1] == 0x0F and took >= HOLD_DELAY * 0.95  # type: ignore[index]
    assert delayed_count(fresh, "lanplus") == 2
    console().login()  # correct credentials: not delayed, never refused
    ok = fresh.ipmitool("chassis", "power", "status", extra=ONE_TRY)
    assert ok.returncode == 0, ok.stderr
    assert delayed_count(fresh, "lanplus") == 2


# --- Redfish -----------------------------------------------------------------------------------------
def test_redfish_held_address_waits_on_failures_only(fresh_redfish: tuple[KbmcProcess, str]) -> None:
    kbmc, url = fresh_redfish
    sessions = "/redfish/v1/SessionService/Sessions"
    with httpx.Client(base_url=url, verify=False, timeout=15) as http:
        for _ in range(5):
            assert http.get("/redfish/v1/Systems", auth=(USER, "wrong-password")).status_code == 401
        assert delayed_count(kbmc, "redfish") == 0
        answer, took = timed(lambda: http.get("/redfish/v1/Systems", auth=(USER, "wrong-password")))
        assert answer.status_code == 401 and took >= HOLD_DELAY * 0.95  # type: ignore[attr-defined]
        login = {"UserName": USER, "Password": "wrong-password"}
        answer, took = timed(lambda: http.post(sessions, json=login))
        assert answer.status_code == 401 and took >= HOLD_DELAY * 0.95  # type: ignore[attr-defined]
        assert delayed_count(kbmc, "redfish") == 2
        # correct credentials: Basic and a session login, answered on the undelayed path
        assert http.get("/redfish/v1/Systems", auth=(USER, PASSWORD)).status_code == 200
        assert http.post(sessions, json={"UserName": USER, "Password": PASSWORD}).status_code == 201
        assert delayed_count(kbmc, "redfish") == 2
        # no credentials, or a forged token, are not failed logins: plain 401s, not delayed
        assert http.get("/redfish/v1/Systems").status_code == 401
        assert http.get("/redfish/v1/Systems", headers={"X-Auth-Token": "forged"}).status_code == 401
        assert delayed_count(kbmc, "redfish") == 2
    assert kbmc.logs().count("failed-login limit reached") == 1


# --- a spoofed Open Session flood --------------------------------------------------------------------
class Flood:
    """Open Session requests at `rate` a second from many 127.77.x.y addresses, for at most `limit`
    seconds (and `count` datagrams); the answers go to sockets nobody reads."""

    def __init__(self, host: str, port: int, rate: int = FLOOD_RATE, limit: float = 30.0,
                 addresses: int = 500) -> None:
        self.target, self.rate, self.limit = (host, port), rate, limit
        self.count = int(rate * limit)
        self.sockets = []
        for i in range(addresses):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.77.{i // 200}.{i % 200 + 1}", 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.sockets.append(s)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        console = Console(lambda d: None, USER, PASSWORD)
        while not self._stop.is_set() and self.sent < self.count and time.monotonic() - started < self.limit:
            console.console_sid = (self.sent * 2654435761) & 0xFFFFFFFF | 1
            self.sockets[self.sent % len(self.sockets)].sendto(console.open_request(), self.target)
            self.sent += 1
            lag = started + self.sent / self.rate - time.monotonic()
            if lag > 0:
                time.sleep(lag)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self.sockets:
            s.close()

    def achieved_rate(self, seconds: float) -> float:
        return self.sent / seconds


def test_flood_of_spoofed_open_sessions_never_refuses_real_clients(kbmc: KbmcProcess) -> None:
    with Flood(kbmc.host, kbmc.port, limit=90.0) as flood:
        time.sleep(1.0)  # the table fills and stays full
        started = time.monotonic()
        for _ in range(5):  # one client at a time, over and over
            one = kbmc.ipmitool("chassis", "power", "status")
            assert one.returncode == 0, one.stderr
        with ThreadPoolExecutor(20) as pool:  # 20 at once from one address
            results = list(pool.map(lambda _: kbmc.ipmitool("chassis", "power", "status"), range(20)))
        failed = [r.stderr for r in results if r.returncode != 0]
        assert failed == [], failed
        # a real flood, not a trickle: let it reach two seconds' worth at the target rate (fast clients
        # may finish sooner), then a client is still served (bench/hardening_bench.py measures rates)
        deadline = time.monotonic() + 60
        while flood.sent < 2 * FLOOD_RATE and flood._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        last = kbmc.ipmitool("chassis", "power", "status")
        assert last.returncode == 0, last.stderr
        assert flood._thread.is_alive(), "the flood ran throughout"
        elapsed = time.monotonic() - started
    assert flood.sent >= 2 * FLOOD_RATE, (flood.sent, flood.achieved_rate(elapsed + 1.0))


# --- nmap --------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is installed by .ci/run (apt)")
@pytest.mark.skipif(os.geteuid() != 0, reason="nmap -sU needs root (raw sockets)")
def test_nmap_ipmi_cipher_zero_says_not_vulnerable(kbmc: KbmcProcess, tmp_path: Path) -> None:
    # The script's port rule wants port 623 or the service asf-rmcp; our port is another, so a
    # services file (in a --datadir nmap reads before its own) names it as nmap names 623.
    services = tmp_path / "nmap-services"
    services.write_text(f"asf-rmcp\t{kbmc.port}/udp\t0.5\n")
    out = subprocess.run(
        ["nmap", "-sU", "-p", str(kbmc.port), "--datadir", str(tmp_path), "--script", "ipmi-cipher-zero",
         "--script-args", "vulns.showall", "-Pn", "-n", kbmc.host],
        capture_output=True, text=True, timeout=120,
    )
    assert re.search(r"^\|\s+State: NOT VULNERABLE$", out.stdout, re.M), out.stdout + out.stderr
    assert "data string too short" not in out.stdout + out.stderr
