"""The failed-login hold (vmbmc/auth/lockout.py) on a fake clock: when it starts, that failures while
held extend it, one credential check per delay in arrival order, the short queue, and that a correct
login is answered at once but neither ends the hold nor resets the count."""

from __future__ import annotations

import pytest

from tests.fake_clock import Clock
from vmbmc.auth.lockout import LoginLimiter, Turn

A, B = "192.0.2.1", "192.0.2.2"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> LoginLimiter:
    return LoginLimiter(limit=5, window=60, hold=60, delay=2, queue=3, clock=clock)


def fail(limiter: LoginLimiter, client: str = A) -> float:
    turn = limiter.turn(client, "test")
    assert turn is not None and turn.wait == 0
    return turn.failed()


def hold(limiter: LoginLimiter, client: str = A) -> None:
    assert [fail(limiter, client) for _ in range(5)] == [0.0] * 5  # the fifth trips it, answered at once
    assert limiter.held(client)


def test_five_failures_in_the_window_hold_the_address_and_only_it(limiter, clock) -> None:
    for _ in range(4):
        fail(limiter)
        clock.now += 20  # 4 in 60 s, then the oldest drops out of the window
    fail(limiter)
    assert not limiter.held(A)
    clock.now += 100
    hold(limiter)
    assert not limiter.held(B) and limiter.turn(B, "test").wait == 0  # type: ignore[union-attr]


def test_failures_while_held_extend_the_hold(limiter, clock) -> None:
    hold(limiter)
    for _ in range(3):  # a failure every 50 s keeps it held well past the first 60 s
        clock.now += 50
        turn = limiter.turn(A, "test")
        assert turn is not None and turn.wait == 0
        assert turn.failed() == 2.0  # answered late
        assert limiter.held(A)
    clock.now += 59.9
    assert limiter.held(A)
    clock.now += 0.2  # 60 s after the last failure
    assert not limiter.held(A)
    assert limiter.turn(A, "test").failed() == 0.0  # type: ignore[union-attr]  # not held: not delayed


def test_one_check_per_delay_in_arrival_order_and_a_short_queue(limiter, clock) -> None:
    hold(limiter)
    turns = [limiter.turn(A, "test") for _ in range(6)]
    assert turns[0] is not None and turns[0].wait == 0  # alone: at once
    assert [t.wait for t in turns[1:4] if t is not None] == [2.0, 4.0, 6.0]
    assert turns[4] is None and turns[5] is None and limiter.refused == 2  # beyond the queue
    assert turns[0].failed() == 2.0
    for n, turn in enumerate(turns[1:4], start=1):
        clock.now = 1000.0 + 2 * n
        assert turn is not None
        assert turn.failed() == 2.0
    assert limiter.checks_held == 4  # at most one per delay: 0, 2, 4, 6 s
    clock.now += 1.0  # 1 s after the last failed check: a new attempt waits for the rest
    late = limiter.turn(A, "test")
    assert late is not None and late.wait == pytest.approx(1.0)
    late.cancel()


def test_a_correct_login_frees_the_turn_but_never_the_hold(limiter, clock) -> None:
    hold(limiter)
    for _ in range(3):  # a validator logging in over and over: each at once
        turn = limiter.turn(A, "test")
        assert turn is not None and turn.wait == 0
        turn.passed()
    assert limiter.held(A) and limiter.failures(A) == 5
    assert fail(limiter) == 2.0  # the count was not reset: still held, still late


def test_a_correct_login_behind_guessers_waits_its_turn(limiter, clock) -> None:
    hold(limiter)
    first, guess, right = (limiter.turn(A, "test") for _ in range(3))
    assert first is not None and guess is not None and right is not None
    assert (first.wait, guess.wait, right.wait) == (0, 2.0, 4.0)
    first.failed()
    clock.now += 2
    guess.failed()
    clock.now += 2
    right.passed()  # nobody waits behind it: the next attempt goes at once
    after = limiter.turn(A, "test")
    assert after is not None and after.wait == 0
    after.passed()


def test_cancelled_turns_give_their_queue_place_back(limiter, clock) -> None:
    hold(limiter)
    first = limiter.turn(A, "test")
    queued = [limiter.turn(A, "test") for _ in range(3)]
    assert limiter.turn(A, "test") is None
    for turn in queued:
        assert isinstance(turn, Turn)
        turn.cancel()
        turn.cancel()  # once only
    assert limiter.turn(A, "test") is not None  # room again
    assert first is not None


def test_a_reported_failure_counts_and_extends_the_hold(limiter, clock) -> None:
    for _ in range(5):
        limiter.failure(A, "test")  # e.g. an RMCP+ console refusing RAKP 2
    assert limiter.held(A)
    clock.now += 59
    limiter.failure(A, "test")
    clock.now += 59
    assert limiter.held(A)


def test_spoofed_spreads_of_addresses_stay_bounded(clock) -> None:
    limiter = LoginLimiter(clock=clock, max_clients=64)
    for n in range(1000):
        for _ in range(5):
            fail(limiter, f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._failures) <= 64 and len(limiter._holds) <= 64
