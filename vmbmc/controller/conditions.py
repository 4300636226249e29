"""`status.conditions` (metav1.Condition, a list-map keyed by type): the one merge of the controller's
writers (reconcile and the power recorder each own some types and copy the others as they are)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def condition(ctype: str, status: bool | str, reason: str, message: str) -> dict[str, Any]:
    """A condition; `status` True/False, or "True"/"False"/"Unknown"."""
    text = status if isinstance(status, str) else ("True" if status else "False")
    return {"type": ctype, "status": text, "reason": reason, "message": message}


def merge(
    old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]], now: str, generation: int | None
) -> list[dict[str, Any]]:
    """`old` with `new` merged in by type (in place, new types last). lastTransitionTime moves only when a
    condition's status does; observedGeneration is the BMC's generation."""
    by_type = {str(c.get("type")): dict(c) for c in old or []}
    for cond in new:
        prev = by_type.get(str(cond["type"]))
        merged = dict(cond)
        if generation is not None:
            merged["observedGeneration"] = generation
        if prev is not None and prev.get("status") == cond["status"] and prev.get("lastTransitionTime"):
            merged["lastTransitionTime"] = prev["lastTransitionTime"]
        else:
            merged["lastTransitionTime"] = now
        by_type[str(cond["type"])] = merged
    return list(by_type.values())
