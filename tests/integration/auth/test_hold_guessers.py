"""Guessing in parallel from a held address is no faster than guessing one at a time (docs/security.md):
one BMC's IPMI and Redfish front ends (vmbmc.kbmc.service) on 127.0.0.1 with a test-sized hold, real
clients guessing at once — 16 httpx connections over Redfish, ipmitool `-I lan` processes over IPMI
1.5 — with the right password among the guesses.

What is measured is the order and spacing of the credential checks the limiter logs for the held
address (its monotonic clock, `at`): failed checks at least `delay` apart, the right password checked
only after the failed checks queued before it, and never within `delay` of the first guess of the burst.
Client-side times only bound from below.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "redfish"))

from machine_double import FakeMachine

from vmbmc.auth import LoginLimiter, StaticCredentials
from vmbmc.kbmc.service import BmcService, ServiceOptions
from vmbmc.metrics import REGISTRY

USER, PASSWORD = "admin", "hold-test-pass16"
DELAY, QUEUE = 0.25, 4
EPSILON = 0.005  # a timer may fire this early on the loop's clock
WAIT = 60.0  # every bounded wait in this module


@dataclass
class Bmc:
    service: BmcService
    limiter: LoginLimiter
    loop: asyncio.AbstractEventLoop

    @property
    def redfish(self) -> str:
        return self.service.redfish.url  # type: ignore[union-attr]

    @property
    def ipmi_port(self) -> int:
        return self.service.ipmi.port  # type: ignore[union-attr]


@pytest.fixture
def bmc() -> Iterator[Bmc]:
    """A BMC on its own loop in a thread, as in the kbmc process; a fresh limiter per test."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    limiter = LoginLimiter(limit=5, window=60, hold=30, delay=DELAY, queue=QUEUE)
    options = ServiceOptions(address="127.0.0.1", ipmi_port=0, redfish_port=0, redfish_http=True)

    async def start() -> BmcService:
        credentials = StaticCredentials(USER, PASSWORD)
        return await BmcService(FakeMachine(), credentials, options, limiter=limiter).start()

    service = asyncio.run_coroutine_threadsafe(start(), loop).result(WAIT)
    try:
        yield Bmc(service, limiter, loop)
    finally:
        asyncio.run_coroutine_threadsafe(service.stop(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()


class Checks(logging.Handler):
    """The limiter's log of credential checks made for a held address."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, bool]] = []  # (at, passed)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "credential check for a held address":
            self.records.append((record.at, record.passed))  # type: ignore[attr-defined]

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + WAIT
        while len(self.records) < count:
            assert time.monotonic() < deadline, f"{len(self.records)} of {count} checks logged"
            time.sleep(0.01)


@pytest.fixture
def checks() -> Iterator[Checks]:
    handler = Checks()
    logger = logging.getLogger("vmbmc.auth.lockout")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def assert_one_check_per_delay(records: list[tuple[float, bool]], right_at: float) -> None:
    """From the burst's first (failed) check on: the k-th failed check at least k delays after it, and
    the right password no earlier than one delay per failed check before it (at least one)."""
    first = records[0][0]
    failed = [at for at, passed in records if not passed]
    assert failed[0] == first
    for k, at in enumerate(failed):
        assert at - first >= k * DELAY - EPSILON, (k, [round(t - first, 3) for t in failed])
    before = sum(1 for at in failed if at < right_at)
    assert before >= 1 and right_at - first >= before * DELAY - EPSILON


def held_checks_metric(protocol: str) -> float:
    return REGISTRY.get_sample_value("vmbmc_login_checks_held_total", {"protocol": protocol}) or 0.0


# --- Redfish: 16 connections at once ------------------------------------------------------------------
def test_sixteen_redfish_connections_guess_no_faster_than_one(bmc: Bmc, checks: Checks) -> None:
    systems = "/redfish/v1/Systems"
    with httpx.Client(base_url=bmc.redfish, timeout=WAIT) as http:
        for _ in range(5):  # hold the address
            assert http.get(systems, auth=(USER, "wrong-password")).status_code == 401
        assert bmc.limiter.held("127.0.0.1")
    metric_before = held_checks_metric("redfish")

    def first_guess() -> None:
        with httpx.Client(base_url=bmc.redfish, timeout=WAIT) as http:
            assert http.get(systems, auth=(USER, "first-guess")).status_code == 401

    # The burst's first guess is checked alone, at once; the others arrive while its 401 waits.
    first = threading.Thread(target=first_guess)
    first.start()
    checks.wait_for(1)
    guesses = [f"guess-{n:02d}" for n in range(15)]
    guesses[7] = PASSWORD
    start = threading.Barrier(len(guesses))
    confirmed: dict[str, float] = {}

    def guesser(password: str) -> list[int]:
        """One connection of its own, guessing until its guess is checked (a 503 was not a check)."""
        statuses = []
        with httpx.Client(base_url=bmc.redfish, timeout=WAIT) as client:
            start.wait(WAIT)
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                status = client.get(systems, auth=(USER, password)).status_code
                statuses.append(status)
                if status != 503:
                    if status == 200:
                        confirmed[password] = time.monotonic()
                    return statuses
                time.sleep(DELAY / 2)
        raise AssertionError(f"{password} never checked: {statuses}")

    with ThreadPoolExecutor(len(guesses)) as pool:
        answers = list(pool.map(guesser, guesses))
    first.join(WAIT)
    finals = [statuses[-1] for statuses in answers]
    assert finals.count(200) == 1 and finals.count(401) == 14 and finals[7] == 200
    refused = sum(statuses.count(503) for statuses in answers)
    assert refused > 0  # beyond the short queue: refused, and not checked (counted below)
    assert len(checks.records) == 1 + len(guesses)  # the first guess and one per 401/200, no more
    assert held_checks_metric("redfish") - metric_before == len(checks.records)
    right_at = next(at for at, passed in checks.records if passed)
    assert_one_check_per_delay(checks.records, right_at)
    assert confirmed[PASSWORD] - checks.records[0][0] >= DELAY - EPSILON  # not confirmed within a delay
    assert bmc.limiter.held("127.0.0.1")  # the right password did not end the hold


# --- IPMI 1.5: ipmitool -I lan processes at once --------------------------------------------------------
def ipmitool_lan(bmc: Bmc, password: str) -> list[str]:
    # A login attempt of a held address with no turn free is dropped unchecked: ipmitool retransmits
    # after its 1 s timeout (here up to 10 times) until one finds a turn.
    return ["ipmitool", "-I", "lan", "-H", "127.0.0.1", "-p", str(bmc.ipmi_port), "-U", USER,
            "-P", password, "-N", "1", "-R", "10", "chassis", "power", "status"]


def test_parallel_ipmitool_lan_guessers_are_no_faster_than_one(bmc: Bmc, checks: Checks) -> None:
    for _ in range(5):  # hold the address: wrong passwords, each refused at Activate Session
        wrong = subprocess.run(ipmitool_lan(bmc, "wrong-password"), capture_output=True, text=True,
                               timeout=WAIT)
        assert wrong.returncode != 0
    assert bmc.limiter.held("127.0.0.1")
    metric_before = held_checks_metric("lan")
    first = subprocess.Popen(ipmitool_lan(bmc, "first-guess"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        # Its Activate Session fails: checked at once (the turn is free), answered a delay late.
        deadline = time.monotonic() + WAIT
        while not any(not passed for _, passed in checks.records):
            assert time.monotonic() < deadline and first.poll() is None, "the first guess was not checked"
            time.sleep(0.01)
        burst_first = next(at for at, passed in checks.records if not passed)
        guesses = [f"guess-{n}" for n in range(6)]
        guesses[3] = PASSWORD
        procs = [
            (password, subprocess.Popen(ipmitool_lan(bmc, password), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
            for password in guesses
        ]
        done: dict[str, tuple[int, str, float]] = {}
        for password, proc in procs:
            out, _ = proc.communicate(timeout=WAIT)
            done[password] = (proc.returncode, out, time.monotonic())
    finally:
        first.kill()
        first.wait(WAIT)
    code, out, ended = done[PASSWORD]
    assert code == 0 and "Chassis Power is" in out
    assert all(done[g][0] != 0 for g in guesses if g != PASSWORD)
    assert ended - burst_first >= DELAY - EPSILON  # not confirmed within a delay of the first guess
    # Known user names take no turn: every check logged is an Activate Session, the right one passed.
    records = [(at, passed) for at, passed in checks.records if at >= burst_first]
    assert [passed for _, passed in records].count(True) == 1
    assert_one_check_per_delay(records, next(at for at, passed in records if passed))
    assert held_checks_metric("lan") - metric_before == len(checks.records)
    assert bmc.limiter.refused > 0  # attempts that found no turn free were dropped unchecked
    assert bmc.limiter.held("127.0.0.1")


def test_a_lone_correct_login_from_a_held_address_is_answered_at_once(bmc: Bmc, checks: Checks) -> None:
    """Nothing else from the address waiting: checked at once over both protocols, over and over (a
    validator), while the address stays held."""
    with httpx.Client(base_url=bmc.redfish, timeout=WAIT) as http:
        for _ in range(5):
            assert http.get("/redfish/v1/Systems", auth=(USER, "wrong-password")).status_code == 401
        time.sleep(DELAY)  # the fifth failure tripped the hold; nothing is waiting now
        for _ in range(3):
            assert http.get("/redfish/v1/Systems", auth=(USER, PASSWORD)).status_code == 200
            ok = subprocess.run(ipmitool_lan(bmc, PASSWORD), capture_output=True, text=True, timeout=WAIT)
            assert ok.returncode == 0, ok.stderr
    assert checks.records and all(passed for _, passed in checks.records)
    assert bmc.limiter.queued == 0 and bmc.limiter.refused == 0 and bmc.limiter.held("127.0.0.1")

