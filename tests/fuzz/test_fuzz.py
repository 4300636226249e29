"""Seeded fuzzing of a real kbmc's IPMI and Redfish front ends: no crash, no 5xx, no state change,
and a real client (ipmitool, sushy) is served afterwards. A short run is part of the default suite;
the long run is marked `slow` (`pytest -m slow tests/fuzz`)."""

from __future__ import annotations

import socket
import ssl
import time

import h11
import httpx
import pytest
import sushy
from conftest import Target
from ipmi_fuzz import datagrams
from redfish_fuzz import raw_requests, requests

SEED = 19
SHORT_IPMI, LONG_IPMI = 3000, 100_000
SHORT_REDFISH, LONG_REDFISH = 300, 10_000
SOURCE = "127.0.50.1"  # the fuzzer's address: its failed logins hold this address only


def fuzz_ipmi(target: Target, count: int, seed: int, limit: float) -> int:
    kbmc = target.kbmc
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((SOURCE, 0))
    sock.setblocking(False)
    sent, started = 0, time.monotonic()
    try:
        for datagram in datagrams(seed, count, kbmc.user):
            if time.monotonic() - started > limit:
                break
            sock.sendto(datagram, (kbmc.host, kbmc.port))
            sent += 1
            if sent % 50 == 0:  # drain answers and let the BMC keep up (a burst would only be dropped)
                try:
                    while sock.recv(2048):
                        pass
                except BlockingIOError:
                    pass
                time.sleep(0.005)
    finally:
        sock.close()
    return sent


def real_clients_served(target: Target) -> None:
    kbmc = target.kbmc
    assert kbmc.proc.poll() is None, "the kbmc crashed:\n" + kbmc.logs()[-3000:]
    for interface in ("lanplus", "lan"):
        out = kbmc.ipmitool("chassis", "power", "status", interface=interface)
        assert out.returncode == 0 and "Chassis Power is off" in out.stdout, (interface, out.stderr)
    root = sushy.Sushy(f"{target.redfish}/redfish/v1", username=kbmc.user, password=kbmc.password,
                       verify=False)
    system = root.get_system(root.get_system_collection().members_identities[0])
    assert system.power_state == sushy.POWER_STATE_OFF


def fuzz_redfish(target: Target, count: int, seed: int, limit: float) -> dict[int, int]:
    kbmc = target.kbmc
    statuses: dict[int, int] = {}
    started = time.monotonic()
    with httpx.Client(base_url=target.redfish, verify=False, timeout=15) as http:
        system_id = http.get("/redfish/v1/Systems", auth=(kbmc.user, kbmc.password)).json()["Members"][0][
            "@odata.id"].rsplit("/", 1)[1]
        for fuzzed in requests(seed, count, kbmc.user, kbmc.password, system_id):
            if time.monotonic() - started > limit:
                break
            try:
                answer = http.request(fuzzed.method, fuzzed.path, headers=fuzzed.headers, content=fuzzed.body)
            except (httpx.LocalProtocolError, h11.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError):
                continue  # the client refused to send it
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            dollar = "?$" in fuzzed.path or "&$" in fuzzed.path
            allowed_5xx = answer.status_code == 501 and dollar  # QueryNotSupported, documented
            assert answer.status_code < 500 or allowed_5xx, (fuzzed, answer.status_code, answer.text[:300])
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    host, port = target.redfish.removeprefix("https://").rsplit(":", 1)
    for raw in raw_requests(seed, max(10, count // 20)):
        with socket.create_connection((host, int(port)), timeout=15) as tcp, \
                context.wrap_socket(tcp, server_hostname=host) as tls:
            try:
                tls.sendall(raw)  # the server may answer 400 and close before reading all of it
            except (ConnectionError, ssl.SSLError):
                pass
            try:
                head = tls.recv(64)
            except (ConnectionError, ssl.SSLError, TimeoutError):
                continue  # closed without an answer: allowed
            if head:
                status = int(head.split(b" ", 2)[1])
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500, (raw[:100], head)
    return statuses


def run(target: Target, ipmi: int, redfish: int, limit: float) -> None:
    before = target.snapshot()
    assert fuzz_ipmi(target, ipmi, SEED, limit) > 0
    statuses = fuzz_redfish(target, redfish, SEED, limit)
    assert sum(statuses.values()) > redfish // 2 and any(400 <= s < 500 for s in statuses)
    assert target.snapshot() == before, "a fuzzed request changed state"
    real_clients_served(target)
    assert "Traceback" not in target.kbmc.logs()


def test_fuzz_short(target: Target) -> None:
    run(target, SHORT_IPMI, SHORT_REDFISH, limit=60)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fuzz_long(target: Target) -> None:
    run(target, LONG_IPMI, LONG_REDFISH, limit=600)
