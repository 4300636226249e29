"""Failed-login limit per client address (contracts §8), shared by IPMI and Redfish.

After `limit` failures within `window` seconds, a client address gets a fast error for `penalty`
seconds, logged once. Correct credentials are never refused: callers check credentials first and
consult `blocked()` only to answer a *failed* attempt quickly, so a validator on 127.0.0.1 cannot
lock itself out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class LoginLimiter:
    def __init__(
        self,
        limit: int = 5,
        window: float = 60.0,
        penalty: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.limit, self.window, self.penalty = limit, window, penalty
        self._clock = clock
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def failure(self, client: str) -> None:
        """Record a failed login from `client` (an address without port)."""
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self._max_clients and client not in self._failures:
                self._prune(now)
            times = self._failures.setdefault(client, deque(maxlen=self.limit))
            times.append(now)
            if (
                len(times) >= self.limit
                and now - times[0] <= self.window
                and self._blocked_until.get(client, 0.0) <= now
            ):
                self._blocked_until[client] = now + self.penalty
                log.warning(
                    "failed-login limit reached; answering failures fast",
                    extra={"client": client, "failures": len(times), "penalty_s": self.penalty},
                )

    def success(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
            self._blocked_until.pop(client, None)

    def blocked(self, client: str) -> bool:
        with self._lock:
            return self._blocked_until.get(client, 0.0) > self._clock()

    def _prune(self, now: float) -> None:
        stale = [c for c, t in self._failures.items() if not t or now - t[-1] > self.window]
        for c in stale:
            self._failures.pop(c, None)
        for c in [c for c, until in self._blocked_until.items() if until <= now]:
            self._blocked_until.pop(c, None)
