"""API answers → state machine errors, and how a requester is named in records and Events."""

from __future__ import annotations

import pytest

from vmbmc.kubevirt.client import ApiError
from vmbmc.kubevirt.machine import describe, machine_error
from vmbmc.machine import BackendUnavailable, Busy, Forbidden, Invalid, NotFound, Protocol, Requester


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
    assert describe(who) == "by IPMI user admin from 10.244.1.7 (request 3f2a)"
    assert describe(Requester(Protocol.REDFISH, "u", "[::1]:5", "r")).startswith("by Redfish user u")
