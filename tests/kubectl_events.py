"""Events as `kubectl describe` lists them, and the order vmbmc promises there: every Event after its cause
(docs/power-history.md, "Order in kubectl describe")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def described_reasons(text: str) -> list[str]:
    """The Reason column of `kubectl describe`'s Events table, top to bottom."""
    lines = text.split("Events:", 1)[1].splitlines()
    return [line.split()[1] for line in lines[3:] if line.strip()]


def assert_cause_first(
    reasons: Sequence[str], events: Sequence[dict[str, Any]], pairs: Sequence[tuple[str, str]]
) -> None:
    """For each (cause, effect) of reasons that occur once each: `kubectl describe` lists the cause first,
    and the effect's lastTimestamp (the only key kubectl sorts on; equal ones come out in no reliable
    order) is a later second than the cause's."""
    last = {e["reason"]: e["lastTimestamp"] for e in events}
    for cause, effect in pairs:
        assert reasons.count(cause) == reasons.count(effect) == 1, (cause, effect, reasons)
        assert reasons.index(cause) < reasons.index(effect), (cause, effect, reasons)
        assert last[cause] < last[effect], (cause, last[cause], effect, last[effect])
