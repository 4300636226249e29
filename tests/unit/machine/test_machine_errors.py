"""API answers → state machine errors, and how a requester is named in records and Events."""

from __future__ import annotations

import pytest

from vmbmc.k8s.client import ApiError
from vmbmc.kubevirt.errors import machine_error
from vmbmc.machine import BackendUnavailable, Busy, Effect, Forbidden, Invalid, NotFound, Protocol, Requester
from vmbmc.machine import requests as rq
from vmbmc.machine.power import KubeVirtCall


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (404, NotFound),
        (403, Forbidden),
        (401, Forbidden),
        (400, Invalid),
        (422, Invalid),
        (409, Busy),
        (500, BackendUnavailable),
        (503, BackendUnavailable),
        (0, BackendUnavailable),
        (429, BackendUnavailable),
    ],
)
def test_machine_error(code: int, error: type) -> None:
    err = machine_error(ApiError(code, "Reason", "what the server said"), "VirtualMachine ns/vm")
    assert type(err) is error
    assert "ns/vm" in err.message or "unavailable" in err.message


def test_retryable_api_errors() -> None:
    assert (
        ApiError(0, "", "").retryable and ApiError(502, "", "").retryable and ApiError(429, "", "").retryable
    )
    assert not ApiError(409, "", "").retryable and not ApiError(404, "", "").retryable


def test_describe() -> None:
    who = Requester(Protocol.IPMI, "admin", "10.244.1.7", "3f2a")
    expected = "by IPMI user admin from 10.244.1.7 (request 3f2a)"
    assert rq.by(rq.record(who, "on", Effect.PENDING, "T")) == expected
    redfish = rq.record(Requester(Protocol.REDFISH, "u", "[::1]:5", "r"), "on", Effect.PENDING, "T")
    assert rq.by(redfish).startswith("by Redfish user u")
    kbmc = rq.record(rq.kbmc_requester("r-restore"), rq.RESTORE_ACTION, Effect.PENDING, "T")
    assert (kbmc["protocol"], kbmc["user"], kbmc["client"]) == ("kbmc", "-", "-")
    assert rq.by(kbmc) == "by the kbmc (request r-restore)"
    assert rq.reason(rq.RESTORE_ACTION) == "BootOverrideRestored"


def test_request_messages_stay_true() -> None:
    """A request Event names the action and the KubeVirt call, never an effect that changes later."""
    who = Requester(Protocol.IPMI, "admin", "127.0.0.1", "id1")
    pending = rq.request_message(rq.record(who, "on", Effect.PENDING, "T"), call=KubeVirtCall.START)
    assert pending == (
        "power on requested by IPMI user admin from 127.0.0.1 (request id1): "
        "KubeVirt call VirtualMachine start"
    )
    assert "pending" not in pending and "effect" not in pending
    none = rq.request_message(rq.record(who, "on", Effect.NONE, "T"), note="the VM is already on")
    assert none.endswith(": no KubeVirt call needed (the VM is already on)")
    refused = rq.request_message(rq.record(who, "pause", Effect.REFUSED, "T"), note="the VM is off")
    assert refused.endswith(": refused, no KubeVirt call (the VM is off)")
