"""core/v1 Events, the one writer for the kbmc's and the controller's Events.

Each Event has a name derived from what it records, so a retried or repeated write is a 409 (already
there), never a copy. It carries a microsecond `eventTime` (when it was seen), and with it what
kube-apiserver then requires (`action`, `reportingComponent`, `reportingInstance`;
pkg/apis/core/validation/events.go). `firstTimestamp` is the time of what it records (a request's time,
a transition's time as KubeVirt recorded it).

`lastTimestamp` (when it was recorded) orders the list: `kubectl describe` sorts Events on it alone, in
whole seconds, and equal ones come out in no reliable order (Go's sort is not stable beyond 12 items).
So an Event never shares its second with its cause: a client's request takes the second it was made
in; whatever is recorded in reaction to something seen (a transition, a request's outcome, a request
the kbmc makes on its own) the second after it was seen (rounded up), and never a second its cause
could hold (`after`). So `kubectl describe` lists cause before effect even when both fall within one
second.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from vmbmc.k8s import clock
from vmbmc.k8s.client import ApiClient

log = logging.getLogger(__name__)

# kube-apiserver's limits (pkg/apis/core/validation/events.go).
MESSAGE_LIMIT = 1024
ACTION_LIMIT = REASON_LIMIT = INSTANCE_LIMIT = 128


def involved(obj: Mapping[str, Any], api_version: str = "", kind: str = "") -> dict[str, Any]:
    """The `involvedObject` of an Event about `obj`, so `kubectl describe` finds it."""
    meta = obj.get("metadata") or {}
    return {
        "apiVersion": str(obj.get("apiVersion") or api_version),
        "kind": str(obj.get("kind") or kind),
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "uid": str(meta.get("uid") or ""),
    }


def event_body(
    *,
    name: str,
    about: Mapping[str, Any],
    type_: str,
    reason: str,
    message: str,
    action: str,
    component: str,
    instance: str,
    recorded: str = "",
    at: datetime.datetime | None = None,
    effect: bool = False,
    after: str = "",
) -> dict[str, Any]:
    """The Event `name` about the object `about` (an involvedObject). `recorded`: the time the Event is
    about (seconds, e.g. a VMI's phase transition), default `at`; `at`: when it was seen (eventTime).
    `effect`: it records something seen in reaction to an earlier Event (a transition, an outcome): its
    lastTimestamp is rounded up. `after`: the latest lastTimestamp its cause's Event may have; this
    one's is at least a second later."""
    at = at or clock.now()
    first = recorded or clock.rfc3339(at)
    last = max(first, clock.rfc3339_up(at)) if effect else first
    cause = clock.parse(after) if after else None
    if cause is not None:
        last = max(last, clock.rfc3339(cause + datetime.timedelta(seconds=1)))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": about["namespace"]},
        "involvedObject": dict(about),
        "type": type_,
        "reason": reason[:REASON_LIMIT],
        "message": message[:MESSAGE_LIMIT],
        "action": action[:ACTION_LIMIT],
        "firstTimestamp": first,
        "lastTimestamp": last,
        "eventTime": clock.micro(at),
        "count": 1,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance[:INSTANCE_LIMIT],
    }


async def create_event(api: ApiClient, body: Mapping[str, Any]) -> bool:
    """Write the Event; False when it is already there (409: its name is the transition's or request's
    id, so a create tried again after a lost answer finds its own). Other API errors are raised."""
    namespace = body["metadata"]["namespace"]
    return await api.create(f"/api/v1/namespaces/{namespace}/events", dict(body)) is not None
