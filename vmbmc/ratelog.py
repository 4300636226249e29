"""Log bad input once per client and reason per interval, so a flood of junk datagrams or
malformed requests cannot flood the log (IPMI and Redfish front ends)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        on_note: Callable[[], None] | None = None,
    ) -> None:
        self._on_note = on_note  # e.g. a metric counting every occurrence, logged or not
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self.suppressed = 0

    def note(self, client: str, message: str) -> bool:
        """Log `message` for `client` unless it was logged within the interval; True if logged."""
        if self._on_note is not None:
            self._on_note()
        now = self._clock()
        key = (client, message)
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self.suppressed += 1
            return False
        if len(self._last) >= self.max_keys:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
            if len(self._last) >= self.max_keys:
                self._last.clear()
        self._last[key] = now
        self.logger.warning(message, extra={"client": client})
        return True
