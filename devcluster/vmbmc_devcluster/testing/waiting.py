"""Polling with a bound, for tests that wait on another process or thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any


def _polls(pred: Callable[[], Any], timeout: float, what: str, found: list[Any]) -> Iterator[None]:
    """Yields (the caller then sleeps) until `pred` returns something truthy, which it puts in `found`;
    fails naming `what` and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        yield
    found.append(value)


def wait_until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `pred` until it returns something truthy (→ that value); fail naming `what` and the last
    value after `timeout` seconds."""
    found: list[Any] = []
    for _ in _polls(pred, timeout, what, found):
        time.sleep(0.1)
    return found[0]


async def wait_for(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """`wait_until` for a test on the event loop: polls without blocking the loop."""
    found: list[Any] = []
    for _ in _polls(pred, timeout, what, found):
        await asyncio.sleep(0.02)
    return found[0]
