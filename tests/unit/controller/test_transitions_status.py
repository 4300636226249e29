"""vmbmc.controller.recorder.status_patch: only our fields, bounded history, nothing when nothing changed."""

from __future__ import annotations

from typing import Any

from vmbmc.controller import attribution
from vmbmc.controller import transitions as tr
from vmbmc.controller.recorder import MAX_HISTORY, status_patch

NOW = "2025-05-01T10:00:00Z"
READY = {"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": NOW}


def bmc(history: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "b", "namespace": "ns", "generation": 2, "resourceVersion": "7"},
        "status": {"conditions": [READY], "powerHistory": history or [], **status},
    }


def transition(n: int) -> tuple[tr.Transition, dict[str, Any]]:
    t = tr.Transition(f"id{n}", "PoweredOn", NOW, "Off", "On", tr.STARTED_API, f"vmi{n}")
    return t, attribution.history_entry(t, None)


def test_first_write_sets_state_and_conditions_and_keeps_others() -> None:
    patch = status_patch(bmc(), tr.Observed("On", vmi="a"), [], [], NOW)
    assert patch is not None
    assert set(patch) == {"powerState", "conditions"}
    assert patch["powerState"] == "On"
    assert patch["conditions"][0] == READY
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert by_type["PoweredOn"]["status"] == "True" and by_type["PoweredOn"]["observedGeneration"] == 2
    assert by_type["BootOverridePending"]["status"] == "False"


def test_nothing_changed_is_no_write() -> None:
    first = status_patch(bmc(), tr.Observed("Off"), [], [], NOW)
    assert first is not None
    again = bmc(powerState="Off")
    again["status"]["conditions"] = first["conditions"]
    assert status_patch(again, tr.Observed("Off"), [], [], "2025-05-01T11:00:00Z") is None


def test_history_is_appended_once_and_bounded() -> None:
    old = [transition(n)[1] for n in range(MAX_HISTORY)]
    t, entry = transition(99)
    patch = status_patch(bmc(old), tr.Observed("On", vmi="vmi99"), [t], [entry], NOW)
    assert patch is not None
    assert len(patch["powerHistory"]) == MAX_HISTORY
    assert patch["powerHistory"][-1]["id"] == "id99"
    assert patch["powerHistory"][0]["id"] == "id1"  # the oldest went
    # Already recorded (by an earlier attempt or another writer): not added again.
    done = bmc([*old[1:], entry], powerState="On")
    again = status_patch(done, tr.Observed("On", vmi="vmi99"), [t], [entry], NOW)
    assert again is None or "powerHistory" not in again
