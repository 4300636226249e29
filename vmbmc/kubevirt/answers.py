"""Requests with one request id are one request: the second gets the first one's answer (an IPMI
retransmit, a Redfish client retrying). Power requests are kept under their id, boot overrides under
`boot/<id>`, for DEDUP_SECONDS and at most DEDUP_MAX of them."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Any

from vmbmc.machine.errors import MachineError
from vmbmc.machine.types import ActionResult, BootOverride

DEDUP_SECONDS = 120.0  # how long a request id is remembered
DEDUP_MAX = 512
BOOT_PREFIX = "boot/"


@dataclass
class Remembered:
    at: float
    result: ActionResult | None = None
    error: MachineError | None = None
    future: asyncio.Future[Any] | None = None
    boot: BootOverride | None = None


class Answers:
    def __init__(self) -> None:
        self._seen: collections.OrderedDict[str, Remembered] = collections.OrderedDict()

    def get(self, key: str) -> Remembered | None:
        """The request's answer when it was seen within DEDUP_SECONDS (older ones are forgotten here)."""
        now = time.monotonic()
        while self._seen:
            first = next(iter(self._seen.values()))
            if now - first.at < DEDUP_SECONDS and len(self._seen) <= DEDUP_MAX:
                break
            self._seen.popitem(last=False)
        return self._seen.get(key)

    def put(self, key: str, remembered: Remembered) -> None:
        self._seen[key] = remembered

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def future(self, request_id: str) -> asyncio.Future[Any] | None:
        """The outcome of the power request or boot override `request_id` (Machine.answer)."""
        seen = self._seen.get(request_id) or self._seen.get(f"{BOOT_PREFIX}{request_id}")
        return None if seen is None else seen.future
