"""The failed-login hold of one BMC, per client address, shared by IPMI and Redfish.

A failed login is a wrong credential presented: a bad IPMI 1.5 auth code, an unknown user or a bad
HMAC in RAKP, a wrong Basic password or session login (a request without credentials, or with an
expired token, is not one). After `limit` failures within `window` seconds the address is held
(logged once) until `hold` seconds after its last failure: failures while held extend the hold.

While held, the address gets at most one credential check per `delay`, across all its connections and
protocols, so guessing in parallel is no faster than guessing one at a time:

- every check asks for a `Turn` first. A lone attempt (no other from the address waiting, no check of
  it in the last `delay` that failed) is checked at once; others wait their turn, one per `delay`, in
  arrival order; beyond `queue` waiting, an attempt is refused without a check (`turn()` is None).
  The IPMI front end asks with `queue=False`: a datagram that finds no turn free is dropped unchecked
  and the client's retransmit asks again;
- a failed check from a held address is answered `delay` seconds after it, so a client that waits
  for its answer before trying again (ipmitool, a person) always finds its next attempt alone;
- a correct check is answered at once and frees the turn for whoever is next. It neither ends the hold
  nor resets the count, so a guesser gains nothing by logging in correctly between guesses, and a
  validator or a user who mistyped is never locked out.

The limiter only decides; the front ends wait on the event loop (never a blocking sleep).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vmbmc import metrics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Hold:
    until: float  # the hold ends then (`hold` after the last failure)
    next_check: float  # the earliest time the next credential check may run
    waiting: int = 0  # attempts that hold a reserved turn and have not been checked yet


class Turn:
    """One credential check's place: run the check after `wait` seconds, then tell the limiter how it
    went (`passed` or `failed`), or `cancel` if it never runs. Exactly one of the three, once."""

    __slots__ = ("_done", "_held", "_limiter", "client", "protocol", "queued", "wait")

    def __init__(
        self, limiter: LoginLimiter, client: str, protocol: str, wait: float, queued: bool, held: bool
    ) -> None:
        self._limiter, self.client, self.protocol = limiter, client, protocol
        self.wait, self.queued, self._held, self._done = wait, queued, held, False

    def passed(self) -> None:
        """The credentials were right: answer at once."""
        if self._finish():
            self._limiter._passed(self)

    def failed(self) -> float:
        """A failed login: recorded; returns how many seconds its answer must wait (0 or `delay`)."""
        return self._limiter._failed(self, checked=True) if self._finish() else 0.0

    def cancel(self) -> None:
        """The check never ran (the client or its session went away): give back the queue place."""
        if self._finish():
            self._limiter._cancelled(self)

    def _finish(self) -> bool:
        done, self._done = self._done, True
        return not done


class LoginLimiter:
    def __init__(
        self,
        limit: int = 5,
        window: float = 60.0,
        hold: float = 60.0,
        delay: float = 2.0,
        queue: int = 4,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 4096,
        max_waiting: int = 1024,
    ) -> None:
        self.limit, self.window, self.hold, self.delay, self.queue = limit, window, hold, delay, queue
        self._clock = clock
        self._max_clients = max_clients
        self._max_waiting = max_waiting  # queued attempts over all addresses (spoofed ones included)
        self._failures: dict[str, deque[float]] = {}
        self._holds: dict[str, _Hold] = {}
        self._waiting = 0
        self._lock = threading.Lock()  # Redfish sessions and IPMI may run on different threads in tests
        # This BMC's own figures (the metrics in vmbmc.metrics add up every BMC of the process).
        self.delayed = 0  # failed logins answered late
        self.checks_held = 0  # credential checks made for a held address
        self.queued = 0  # attempts that waited for their turn
        self.refused = 0  # attempts refused unchecked (queue full)

    # --- the front ends' side ---------------------------------------------------------------------
    def turn(self, client: str, protocol: str = "", *, queue: bool = True) -> Turn | None:
        """The turn of one credential check from `client` (an address without port): `Turn.wait`
        seconds from now, 0 for at once; None when the address's queue is full (refuse the attempt
        without checking it). `queue=False`: at once or refused (a datagram client retransmits)."""
        now = self._clock()
        with self._lock:
            hold = self._holds.get(client)
            if hold is None or hold.until <= now:
                return Turn(self, client, protocol, 0.0, False, False)
            slot = max(now, hold.next_check)
            if slot <= now:  # alone: at once, with the turn reserved until it is known to have passed
                hold.next_check = now + self.delay
                return Turn(self, client, protocol, 0.0, False, True)
            if not queue or hold.waiting >= self.queue or self._waiting >= self._max_waiting:
                self.refused += 1
                refused = True
            else:
                refused = False
                self.queued += 1
                hold.waiting += 1
                self._waiting += 1
                hold.next_check = slot + self.delay
        if refused:
            metrics.LOGIN_REFUSED_UNCHECKED.labels(protocol or "-").inc()
            return None
        return Turn(self, client, protocol, slot - now, True, True)

    def failure(self, client: str, protocol: str = "") -> None:
        """A failed login the client reports rather than one we checked (an RMCP+ console refusing
        RAKP 2): counted, and it trips or extends a hold like any other. It took no turn and there is
        no answer to delay, so the turns of others are not moved."""
        self._failed(Turn(self, client, protocol, 0.0, False, False), checked=False)

    def held(self, client: str) -> bool:
        with self._lock:
            hold = self._holds.get(client)
            return hold is not None and hold.until > self._clock()

    def failures(self, client: str) -> int:
        """Failed logins of `client` still remembered (at most `limit`)."""
        with self._lock:
            return len(self._failures.get(client, ()))

    # --- Turn's callbacks -------------------------------------------------------------------------
    def _release(self, turn: Turn, hold: _Hold | None) -> None:
        if turn.queued:
            self._waiting -= 1
            if hold is not None:
                hold.waiting -= 1

    def _passed(self, turn: Turn) -> None:
        now = self._clock()
        with self._lock:
            hold = self._holds.get(turn.client)
            self._release(turn, hold)
            if turn._held:
                self.checks_held += 1
            if hold is not None and hold.waiting == 0:
                hold.next_check = min(hold.next_check, now)  # nobody waits: the next one goes at once
        if turn._held:
            self._checked_held(turn, now, passed=True)

    def _cancelled(self, turn: Turn) -> None:
        with self._lock:
            self._release(turn, self._holds.get(turn.client))

    def _failed(self, turn: Turn, *, checked: bool) -> float:
        now = self._clock()
        protocol = turn.protocol or "-"
        metrics.LOGIN_FAILURES.labels(protocol).inc()
        tripped = False
        with self._lock:
            hold = self._holds.get(turn.client)
            self._release(turn, hold)
            if turn._held:
                self.checks_held += 1
            if len(self._failures) >= self._max_clients and turn.client not in self._failures:
                self._prune(now)
            times = self._failures.setdefault(turn.client, deque(maxlen=self.limit))
            times.append(now)
            held = hold is not None and hold.until > now
            if held:
                assert hold is not None
                hold.until = now + self.hold
                if checked:  # the next check waits `delay` after this one
                    hold.next_check = max(hold.next_check, now + self.delay)
                self.delayed += 1
            elif len(times) >= self.limit and now - times[0] <= self.window:
                # From now on held. This failure is answered at once, as it would have been a moment
                # earlier: the next attempt finds the turn free (serial and parallel alike).
                if hold is not None:
                    hold.until, hold.next_check = now + self.hold, now
                else:
                    if len(self._holds) >= self._max_clients:
                        self._prune(now)
                    self._holds[turn.client] = _Hold(now + self.hold, now)
                tripped = True
        if turn._held:
            self._checked_held(turn, now, passed=False)
        if tripped:
            log.warning(
                "failed-login limit reached; holding the address",
                extra={"client": turn.client, "failures": self.limit, "hold_s": self.hold,
                       "delay_s": self.delay},
            )
        if not held:
            return 0.0
        metrics.LOGIN_FAILURES_DELAYED.labels(protocol).inc()
        return self.delay

    @staticmethod
    def _checked_held(turn: Turn, now: float, *, passed: bool) -> None:
        metrics.LOGIN_CHECKS_HELD.labels(turn.protocol or "-").inc()
        # `at` is this limiter's clock (monotonic): the order and spacing of checks, for tests and audits
        log.debug(
            "credential check for a held address",
            extra={"client": turn.client, "protocol": turn.protocol, "passed": passed, "at": now},
        )

    def _prune(self, now: float) -> None:
        for c in [c for c, t in self._failures.items() if not t or now - t[-1] > self.window]:
            self._failures.pop(c, None)
        for c in [c for c, h in self._holds.items() if h.until <= now and h.waiting == 0]:
            self._holds.pop(c, None)
        if len(self._holds) >= self._max_clients:  # as many held addresses: release the oldest idle half
            idle = sorted((h.until, c) for c, h in self._holds.items() if h.waiting == 0)
            for _, c in idle[: self._max_clients // 2]:
                self._holds.pop(c, None)
        if len(self._failures) >= self._max_clients:  # a spoofed spread of addresses: forget the oldest
            for c in sorted(self._failures, key=lambda c: self._failures[c][-1])[: self._max_clients // 2]:
                self._failures.pop(c, None)
