"""The seconds that order Events in `kubectl describe` (it sorts on lastTimestamp alone): a client's
request keeps its second, anything seen in reaction to it comes a second later, and an Event caused by a
kbmc's own request (itself rounded up) later still."""

from __future__ import annotations

import datetime
from typing import Any

from vmbmc.k8s.events import event_body
from vmbmc.machine.requests import event_last

ABOUT = {"apiVersion": "v1", "kind": "Pod", "namespace": "ns", "name": "p", "uid": "u"}
T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, 400000, tzinfo=datetime.UTC)


def last(at: datetime.datetime, **kw: Any) -> str:
    body = event_body(name="p.x", about=ABOUT, type_="Normal", reason="R", message="m", action="R",
                      component="vmbmc-kbmc", instance="pod", at=at, **kw)
    return str(body["lastTimestamp"])


def test_request_keeps_its_second_and_its_effect_takes_the_next() -> None:
    request = last(T0)
    effect = last(T0 + datetime.timedelta(milliseconds=300), effect=True)  # same second
    assert (request, effect) == ("2026-01-02T03:04:05Z", "2026-01-02T03:04:06Z")


def test_an_effect_of_a_kbmc_request_comes_after_its_rounded_up_second() -> None:
    own = {"time": "2026-01-02T03:04:05Z", "protocol": "kbmc"}
    client = {"time": "2026-01-02T03:04:05Z", "protocol": "ipmi"}
    assert event_last(client) == "2026-01-02T03:04:05Z"
    assert event_last(own) == last(T0, effect=True) == "2026-01-02T03:04:06Z"  # the kbmc's own Event
    seen = T0 + datetime.timedelta(milliseconds=200)  # the controller sees its effect in the same second
    assert last(seen, effect=True, after=event_last(own)) == "2026-01-02T03:04:07Z"
    assert last(seen, effect=True, after=event_last(client)) == "2026-01-02T03:04:06Z"
    later = T0 + datetime.timedelta(seconds=3)  # seen later: its own second, nothing pushed
    assert last(later, effect=True, after=event_last(own)) == "2026-01-02T03:04:09Z"
