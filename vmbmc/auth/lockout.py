"""The failed-login hold of one BMC, per client address, shared by IPMI and Redfish.

A failed login is a wrong credential presented: a bad IPMI 1.5 auth code, an unknown user or a bad
HMAC in RAKP, a wrong Basic password or session login (a request without credentials, or with an
expired token, is not one). After `limit` failures within `window` seconds the address is held for
`hold` seconds (logged once): each further failed login from it is answered only after `delay`
seconds. Correct credentials are answered at once and never refused, and a correct login neither
ends a hold nor resets the count, so a validator on 127.0.0.1 cannot lock itself out and a
guesser gains nothing by logging in correctly between guesses.

The limiter only decides; the front ends delay the answer on the event loop (never a blocking
sleep): `failure()` says how long.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from vmbmc.kbmc.metrics import Counter  # the kbmc serves these; prometheus_client costs ~4 MiB

log = logging.getLogger(__name__)

FAILURES = Counter("vmbmc_login_failures", "Failed logins (wrong credentials presented)", ["protocol"])
DELAYED = Counter(
    "vmbmc_login_failures_delayed", "Failed logins answered late because their address was held", ["protocol"]
)


class LoginLimiter:
    def __init__(
        self,
        limit: int = 5,
        window: float = 60.0,
        hold: float = 60.0,
        delay: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 4096,
    ) -> None:
        self.limit, self.window, self.hold, self.delay = limit, window, hold, delay
        self._clock = clock
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._held_until: dict[str, float] = {}
        self._lock = threading.Lock()  # Redfish sessions and IPMI may run on different threads in tests
        self.delayed = 0  # failures answered late (this BMC), for tests and figures

    def failure(self, client: str, protocol: str = "") -> float:
        """Record a failed login from `client` (an address without port); returns how many seconds
        its answer must wait: `delay` while the address is held, else 0."""
        now = self._clock()
        FAILURES.labels(protocol or "-").inc()
        with self._lock:
            held = self._held_until.get(client, 0.0) > now
            if len(self._failures) >= self._max_clients and client not in self._failures:
                self._prune(now)
            times = self._failures.setdefault(client, deque(maxlen=self.limit))
            times.append(now)
            if not held and len(times) >= self.limit and now - times[0] <= self.window:
                self._held_until[client] = now + self.hold
                log.warning(
                    "failed-login limit reached; holding the address",
                    extra={"client": client, "failures": len(times), "hold_s": self.hold,
                           "delay_s": self.delay},
                )
            if not held:
                return 0.0
            self.delayed += 1
        DELAYED.labels(protocol or "-").inc()
        return self.delay

    def held(self, client: str) -> bool:
        with self._lock:
            return self._held_until.get(client, 0.0) > self._clock()

    def _prune(self, now: float) -> None:
        stale = [c for c, t in self._failures.items() if not t or now - t[-1] > self.window]
        for c in stale:
            self._failures.pop(c, None)
        for c in [c for c, until in self._held_until.items() if until <= now]:
            self._held_until.pop(c, None)
        if len(self._failures) >= self._max_clients:  # a spoofed spread of addresses: forget the oldest
            for c in sorted(self._failures, key=lambda c: self._failures[c][-1])[: self._max_clients // 2]:
                self._failures.pop(c, None)
