"""Reset action: ResetType → PowerAction (the power table's Redfish column) and the error mapping."""

from __future__ import annotations

import httpx
import pytest

from vmbmc.machine.errors import BackendUnavailable, Forbidden, NotFound
from vmbmc.machine.types import PowerAction, PowerState, Protocol

RESET = "/redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset"


def code(r: httpx.Response) -> str:
    body = r.json()["error"]
    assert body["@Message.ExtendedInfo"][0]["MessageId"] == body["code"]
    return body["code"].rsplit(".", 1)[1]


@pytest.mark.parametrize(
    ("reset_type", "start", "action"),
    [
        ("On", PowerState.OFF, PowerAction.ON),
        ("ForceOn", PowerState.OFF, PowerAction.ON),
        ("ForceOff", PowerState.ON, PowerAction.OFF),
        ("GracefulShutdown", PowerState.ON, PowerAction.SHUTDOWN),
        ("GracefulRestart", PowerState.ON, PowerAction.GRACEFUL_RESTART),
        ("ForceRestart", PowerState.ON, PowerAction.RESET),
        ("PowerCycle", PowerState.ON, PowerAction.CYCLE),
        ("Pause", PowerState.ON, PowerAction.PAUSE),
        ("Resume", PowerState.PAUSED, PowerAction.RESUME),
    ],
)
async def test_reset_types(client, machine, reset_type, start, action) -> None:
    machine.set_state(start)
    r = await client.post(RESET, json={"ResetType": reset_type})
    assert r.status_code == 204, r.text
    ((called, who),) = machine.calls
    assert called is action
    assert who.protocol is Protocol.REDFISH and who.user == "admin" and who.client == "127.0.0.1"
    assert len(who.request_id) == 32


async def test_power_state_goes_through_transition(client, machine) -> None:
    machine.transition_delay = 0.2
    assert (await client.post(RESET, json={"ResetType": "On"})).status_code == 204
    assert (await client.get("/redfish/v1/Systems/vm1")).json()["PowerState"] == "PoweringOn"


async def test_nmi_not_offered(client, machine) -> None:
    r = await client.post(RESET, json={"ResetType": "Nmi"})
    assert r.status_code == 400 and code(r) == "ActionParameterNotSupported"
    assert machine.calls == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ResetType": "Explode"}, "ActionParameterValueNotInList"),
        ({"ResetType": 1}, "ActionParameterValueTypeError"),
        ({}, "ActionParameterMissing"),
        ({"ResetType": "On", "Force": True}, "ActionParameterUnknown"),
    ],
)
async def test_bad_reset_bodies(client, machine, body, message) -> None:
    r = await client.post(RESET, json=body)
    assert r.status_code == 400 and code(r) == message
    assert machine.calls == []


async def test_refused_when_off_is_409(client, machine) -> None:
    r = await client.post(RESET, json={"ResetType": "Pause"})
    assert r.status_code == 409 and code(r) == "ChassisPowerStateOnRequired"
    machine.set_state(PowerState.PAUSED)
    r = await client.post(RESET, json={"ResetType": "GracefulShutdown"})
    assert r.status_code == 409 and code(r) == "ActionParameterValueConflict"
    assert "paused" in r.json()["error"]["@Message.ExtendedInfo"][0]["Resolution"]


async def test_busy_is_503_with_retry_after(client, machine) -> None:
    machine.busy = 7.2
    r = await client.post(RESET, json={"ResetType": "On"})
    assert r.status_code == 503 and code(r) == "ServiceTemporarilyUnavailable"
    assert r.headers["Retry-After"] == "8"


async def test_busy_settles_within_the_wait(client, machine) -> None:
    machine.set_state(PowerState.POWERING_OFF)
    machine.loop.call_later(0.1, machine.set_state, PowerState.OFF)
    r = await client.post(RESET, json={"ResetType": "On"})
    assert r.status_code == 204
    assert machine.calls[0][0] is PowerAction.ON


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (NotFound("gone"), 404, "ResourceNotFound"),
        (BackendUnavailable("api down"), 503, "ServiceTemporarilyUnavailable"),
        (Forbidden("rbac"), 403, "InsufficientPrivilege"),
    ],
)
async def test_backend_errors(client, machine, error, status, message) -> None:
    machine.fail_with = error
    r = await client.post(RESET, json={"ResetType": "On"})
    assert r.status_code == status and code(r) == message


async def test_if_match_tolerated_on_actions(client, machine) -> None:
    r = await client.post(RESET, json={"ResetType": "On"}, headers={"If-Match": '"stale-etag"'})
    assert r.status_code == 204


async def test_manager_reset_drops_sessions(anon) -> None:
    login = await anon.post(
        "/redfish/v1/SessionService/Sessions", json={"UserName": "admin", "Password": "password-for-tests"}
    )
    token = {"X-Auth-Token": login.headers["X-Auth-Token"]}
    assert (await anon.get("/redfish/v1/Systems", headers=token)).status_code == 200
    r = await anon.post(
        "/redfish/v1/Managers/BMC/Actions/Manager.Reset", json={"ResetType": "GracefulRestart"}, headers=token
    )
    assert r.status_code == 204
    assert (await anon.get("/redfish/v1/Systems", headers=token)).status_code == 401
