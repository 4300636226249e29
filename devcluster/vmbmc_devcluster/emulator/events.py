"""core/v1 Events and events.k8s.io/v1 Events: one store, two shapes (as kube-apiserver converts them)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from vmbmc_devcluster.emulator.errors import invalid
from vmbmc_devcluster.emulator.schema import Cause, _cause

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


# kube-apiserver's limits and rules for a core/v1 Event (pkg/apis/core/validation/events.go,
# legacyValidateEvent): an Event with an eventTime is a "new" Event and must say who reported it and what
# it did; one without keeps the old rule that it lives in its object's namespace.
_LIMITS = {"reportingInstance": 128, "action": 128, "reason": 128, "message": 1024}
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _qualified_name_errors(value: str) -> list[str]:
    """validation.IsQualifiedName: an optional DNS-subdomain prefix and `/`, then a name of <= 63 chars."""
    prefix, _, name = value.rpartition("/")
    errors = []
    if "/" in value and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        errors.append("prefix part must be a valid DNS subdomain")
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _NAME.match(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    return errors


def validate_event(obj: dict) -> list[Cause]:
    """The causes kube-apiserver gives for a core/v1 Event it refuses on create or update (none: valid)."""
    causes: list[Cause] = []
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    involved_ns = str((obj.get("involvedObject") or {}).get("namespace") or "")
    if not obj.get("eventTime"):
        if involved_ns != namespace and (involved_ns or namespace not in ("", "default")):
            causes.append(_cause("FieldValueInvalid", "involvedObject.namespace", involved_ns, _NS_MISMATCH))
        return causes
    if not involved_ns and namespace not in ("default", "kube-system"):
        causes.append(_cause("FieldValueInvalid", "involvedObject.namespace", involved_ns, _NS_MISMATCH))
    controller = str(obj.get("reportingComponent") or "")
    if not controller:
        causes.append(_cause("FieldValueRequired", "reportingComponent"))
    for detail in _qualified_name_errors(controller):
        causes.append(_cause("FieldValueInvalid", "reportingComponent", controller, detail))
    for field in ("reportingInstance", "action", "reason", "message"):
        value = str(obj.get(field) or "")
        if not value and field != "message":
            causes.append(_cause("FieldValueRequired", field))
        elif len(value) > _LIMITS[field]:
            limit = f"can have at most {_LIMITS[field]} characters"
            causes.append(_cause("FieldValueInvalid", field, "", limit))
    return causes


_NS_MISMATCH = "does not match event.namespace"


def event_admission(rt: Any) -> Callable[[dict, dict | None], dict]:
    """The admission hook of Events created or updated through `rt` (core/v1 or events.k8s.io/v1; both
    arrive here in the core shape). Through events.k8s.io the field is called reportingController."""
    renamed = rt.group == "events.k8s.io"

    def admit(obj: dict, old: dict | None) -> dict:
        causes = validate_event(obj)
        if renamed:
            for cause in causes:
                cause["field"] = cause["field"].replace("reportingComponent", "reportingController")
        if causes:
            raise invalid(rt, str(obj["metadata"].get("name") or ""), causes)
        return obj

    return admit
