"""The emulator refuses Events as kube-apiserver does (pkg/apis/core/validation/events.go): one with an
eventTime must name its action, reportingComponent (a qualified name) and reportingInstance; one without
must live in its object's namespace."""

from __future__ import annotations

from typing import Any

import pytest

from vmbmc.k8s.events import event_body
from vmbmc_devcluster.emulator.events import validate_event

ABOUT = {"apiVersion": "v1", "kind": "Pod", "namespace": "ns", "name": "p", "uid": "u"}


def ours(**changes: Any) -> dict[str, Any]:
    body = event_body(
        name="p.abc",
        about=ABOUT,
        type_="Normal",
        reason="PoweredOn",
        message="m",
        action="PoweredOn",
        component="vmbmc-controller",
        instance="pod-0",
    )
    body.update(changes)
    return body


def test_our_events_are_valid() -> None:
    assert validate_event(ours()) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"action": ""}, ["action: Required value"]),
        ({"reportingInstance": ""}, ["reportingInstance: Required value"]),
        (
            {"reportingComponent": ""},
            [
                "reportingComponent: Required value",
                'reportingComponent: Invalid value: "": name part must be non-empty',
            ],
        ),
        ({"reason": "x" * 129}, ['reason: Invalid value: "": can have at most 128 characters']),
        ({"message": "x" * 1025}, ['message: Invalid value: "": can have at most 1024 characters']),
        (
            {"eventTime": None, "involvedObject": {**ABOUT, "namespace": "other"}},
            ['involvedObject.namespace: Invalid value: "other": does not match event.namespace'],
        ),
        ({"eventTime": None, "action": "", "reportingInstance": ""}, []),  # an old-style Event
    ],
)
def test_refused_as_kube_apiserver_refuses(changes: dict[str, Any], expected: list[str]) -> None:
    assert [f"{c['field']}: {c['message']}" for c in validate_event(ours(**changes))] == expected
