"""core/v1 Events and events.k8s.io/v1 Events: one store, two shapes (as kube-apiserver converts them)."""

from __future__ import annotations

import copy

# events.k8s.io/v1 field -> core/v1 field
_RENAMES = {
    "regarding": "involvedObject",
    "note": "message",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}


def events_v1_to_core(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    for new, old in _RENAMES.items():
        if new in out:
            out[old] = out.pop(new)
    if "series" in out:
        out["series"] = {
            "count": out["series"].get("count"),
            "lastObservedTime": out["series"].get("lastObservedTime"),
        }
    out["apiVersion"], out["kind"] = "v1", "Event"
    return out


def core_to_events_v1(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    for new, old in _RENAMES.items():
        if old in out:
            out[new] = out.pop(old)
    if not out.get("eventTime"):
        # events.k8s.io/v1 requires eventTime; core Events written without one show their first time.
        stamp = out.get("deprecatedFirstTimestamp") or out.get("metadata", {}).get("creationTimestamp")
        if stamp:
            out["eventTime"] = stamp.replace("Z", ".000000Z")
    out["apiVersion"], out["kind"] = "events.k8s.io/v1", "Event"
    return out
