"""Sessions (login, use, logout, expiry, bound) and failed-login accounting."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx

from vmbmc.auth import LoginLimiter
from vmbmc.redfish.sessions import SessionStore

SESSIONS = "/redfish/v1/SessionService/Sessions"
GOOD = {"UserName": "admin", "Password": "password-for-tests"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_login_use_logout(anon) -> None:
    r = await anon.post(SESSIONS, json=GOOD)
    assert r.status_code == 201
    token, location = r.headers["X-Auth-Token"], r.headers["Location"]
    assert location.startswith(SESSIONS + "/")
    assert r.json()["@odata.id"] == location and r.json()["UserName"] == "admin"
    assert "Password" not in r.text and token not in r.text
    auth = {"X-Auth-Token": token}
    assert (await anon.get("/redfish/v1/Systems/vm1", headers=auth)).status_code == 200
    members = (await anon.get(SESSIONS, headers=auth)).json()["Members"]
    assert {"@odata.id": location} in members
    assert (await anon.get(location, headers=auth)).status_code == 200
    assert (await anon.delete(location, headers=auth)).status_code == 204
    assert (await anon.get("/redfish/v1/Systems/vm1", headers=auth)).status_code == 401
    r = await anon.delete(location, headers=basic("admin", "password-for-tests"))
    assert r.status_code == 404


async def test_expired_token(app, anon) -> None:
    now = [1000.0]
    app.state.service.sessions = SessionStore(timeout=60, clock=lambda: now[0])
    token = (await anon.post(SESSIONS, json=GOOD)).headers["X-Auth-Token"]
    now[0] += 59
    assert (await anon.get("/redfish/v1/Systems", headers={"X-Auth-Token": token})).status_code == 200
    now[0] += 59  # idle timeout: counted from the last use
    assert (await anon.get("/redfish/v1/Systems", headers={"X-Auth-Token": token})).status_code == 200
    now[0] += 61
    r = await anon.get("/redfish/v1/Systems", headers={"X-Auth-Token": token})
    assert r.status_code == 401
    assert r.json()["error"]["code"].endswith("NoValidSession")


async def test_session_count_is_bounded(app, anon) -> None:
    app.state.service.sessions = SessionStore(max_sessions=3)
    tokens = [(await anon.post(SESSIONS, json=GOOD)).headers["X-Auth-Token"] for _ in range(4)]
    statuses = [(await anon.get("/redfish/v1", headers={"X-Auth-Token": t})).status_code for t in tokens]
    assert statuses == [200] * 4  # the root needs no auth; check a protected resource instead
    statuses = [
        (await anon.get("/redfish/v1/Systems", headers={"X-Auth-Token": t})).status_code for t in tokens
    ]
    assert statuses == [401, 200, 200, 200], "the least recently used session was closed"


async def test_bad_logins(anon, limiter) -> None:
    r = await anon.post(SESSIONS, json={"UserName": "admin", "Password": "wrong"})
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    r = await anon.post(SESSIONS, json={"UserName": "admin"})
    assert r.status_code == 400 and r.json()["error"]["code"].endswith("CreateFailedMissingReqProperties")
    r = await anon.post(SESSIONS, json={"UserName": "admin", "Password": 5})
    assert r.status_code == 400 and "5" not in r.json()["error"]["message"]
    assert (await anon.get("/redfish/v1/Systems", headers=basic("admin", "nope"))).status_code == 401
    assert (await anon.get("/redfish/v1/Systems", headers={"Authorization": "Basic !!"})).status_code == 401
    assert (await anon.get("/redfish/v1/Systems", headers={"X-Auth-Token": "forged"})).status_code == 401
    assert limiter.failures("127.0.0.1") == 2  # wrong passwords count; garbage headers do not


async def test_held_address_waits_on_failures_only(anon, limiter) -> None:
    """The lockout on Redfish: after 5 failures the address is held; a further wrong password (Basic
    or session login) is answered only after the delay, correct credentials at once."""
    for _ in range(limiter.limit):
        await anon.get("/redfish/v1/Systems", headers=basic("admin", "guess"))
    assert limiter.held("127.0.0.1") and limiter.delayed == 0
    for attempt in (
        lambda: anon.get("/redfish/v1/Systems", headers=basic("admin", "guess")),
        lambda: anon.post(SESSIONS, json={"UserName": "admin", "Password": "guess"}),
    ):
        started = time.monotonic()
        assert (await attempt()).status_code == 401
        assert time.monotonic() - started >= limiter.delay * 0.95
    assert limiter.delayed == 2
    ok = await anon.get("/redfish/v1/Systems", headers=basic("admin", "password-for-tests"))
    assert ok.status_code == 200
    assert (await anon.post(SESSIONS, json=GOOD)).status_code == 201
    assert limiter.delayed == 2  # correct credentials took the undelayed path
    assert limiter.held("127.0.0.1")  # and a correct login did not end the hold


async def test_parallel_guesses_from_a_held_address_wait_their_turn(app, anon) -> None:
    """Eight requests at once from a held address, Basic and session logins mixed, the right password
    third: one password check per delay in arrival order, the right one answered only in its turn,
    the requests beyond the queue refused with 503 and never checked."""
    limiter = app.state.service.limiter = LoginLimiter(delay=0.3, queue=3)
    for _ in range(limiter.limit):
        await anon.get("/redfish/v1/Systems", headers=basic("admin", "guess"))
    assert limiter.held("127.0.0.1")
    passwords = ["g0", "g1", "password-for-tests", "g3", "g4", "g5", "g6", "g7"]
    answered: dict[int, float] = {}
    started = time.monotonic()

    async def attempt(n: int) -> httpx.Response:
        if n % 2:
            r = await anon.post(SESSIONS, json={"UserName": "admin", "Password": passwords[n]})
        else:
            r = await anon.get("/redfish/v1/Systems", headers=basic("admin", passwords[n]))
        answered[n] = time.monotonic() - started
        return r

    answers = await asyncio.gather(*(attempt(n) for n in range(8)))
    assert [r.status_code for r in answers] == [401, 401, 200, 401, 503, 503, 503, 503]
    assert limiter.checks_held == 4 and limiter.refused == 4  # the 503s were never checked
    assert answers[4].headers["Retry-After"] and "ServiceTemporarilyUnavailable" in answers[4].text
    assert answered[2] >= 2 * limiter.delay * 0.95  # the right password waited for two checks before it
    assert limiter.held("127.0.0.1")


async def test_no_credentials_no_power_change(anon, machine) -> None:
    r = await anon.post("/redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset", json={"ResetType": "On"})
    assert r.status_code == 401
    r = await anon.patch("/redfish/v1/Systems/vm1", json={"Boot": {"BootSourceOverrideTarget": "Pxe"}})
    assert r.status_code == 401
    assert machine.calls == [] and machine.boot_calls == []


def test_store_keeps_only_digests() -> None:
    store = SessionStore()
    session, token = store.create("admin", "127.0.0.1")
    assert token not in repr(store._by_digest)
    assert store.lookup(token) is session
    assert store.delete(session.id) and store.lookup(token) is None


async def test_access_log_line_without_secrets(anon, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO)
    r = await anon.post(SESSIONS, json=GOOD)
    token = r.headers["X-Auth-Token"]
    await anon.get("/redfish/v1/Systems/vm1", headers={"X-Auth-Token": token})
    await anon.get("/redfish/v1/Systems/vm1", headers=basic("admin", "password-for-tests"))
    lines = [rec for rec in caplog.records if rec.name == "vmbmc.redfish.access"]
    assert len(lines) == 3
    last = lines[-1]
    assert (last.method, last.path, last.status, last.user, last.client) == (
        "GET",
        "/redfish/v1/Systems/vm1",
        200,
        "admin",
        "127.0.0.1",
    )
    assert last.duration_ms >= 0 and len(last.request_id) == 32
    everything = " ".join(f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records)
    assert token not in everything and "password-for-tests" not in everything
