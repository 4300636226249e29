"""Malformed and unsupported requests: each gets the right 4xx (or 5xx) with a Redfish error body."""

from __future__ import annotations

import base64

import httpx
import pytest

BASIC = {"Authorization": "Basic " + base64.b64encode(b"admin:password-for-tests").decode()}


def code(r) -> str:
    body = r.json()["error"]
    assert body["message"] and body["@Message.ExtendedInfo"]
    return body["code"].rsplit(".", 1)[1]


@pytest.mark.parametrize(
    ("method", "uri"),
    [
        ("DELETE", "/redfish/v1/Systems/vm1"),
        ("POST", "/redfish/v1/Systems"),
        ("PUT", "/redfish/v1/Systems/vm1"),
        ("PATCH", "/redfish/v1/Managers/BMC"),
        ("GET", "/redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset"),
        ("POST", "/redfish/v1/"),
    ],
)
async def test_wrong_method_is_405(client, method, uri) -> None:
    r = await client.request(method, uri, json={})
    assert r.status_code == 405 and code(r) == "OperationNotAllowed"
    assert r.headers["Allow"]


async def test_unknown_uri_is_404(client) -> None:
    for uri in (
        "/redfish/v1/Nope",
        "/redfish/v1/Systems/other",
        "/redfish/v1/Systems/vm1/EthernetInterfaces/x",
        "/redfish/v1/AccountService/Accounts/2",
        "/redfish/v1/SessionService/Sessions/zzz",
    ):
        r = await client.get(uri)
        assert r.status_code == 404, uri
        code(r)


async def test_huge_body_is_413(client, machine) -> None:
    huge = b'{"ResetType": "On", "x": "' + b"a" * (80 * 1024) + b'"}'
    r = await client.post(
        "/redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset",
        content=huge,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and code(r) == "PayloadTooLarge"
    assert machine.calls == []


async def test_wrong_content_type_is_415(client) -> None:
    r = await client.post(
        "/redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset",
        content=b"ResetType=On",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415


async def test_no_credentials_is_401(anon) -> None:
    r = await anon.get("/redfish/v1/Systems/vm1")
    assert r.status_code == 401 and code(r) == "NoValidSession"
    assert r.headers["WWW-Authenticate"].startswith("Basic")


async def test_odata_version_and_queries(client) -> None:
    assert (await client.get("/redfish/v1/", headers={"OData-Version": "4.1"})).status_code == 412
    r = await client.get("/redfish/v1/Systems?$expand=*")
    assert r.status_code == 501 and code(r) == "QueryNotSupported"
    assert (await client.get("/redfish/v1/Systems?only")).status_code == 200


async def test_unexpected_error_is_a_redfish_500(app, machine) -> None:
    def broken():
        raise RuntimeError("bug")

    machine.inventory = broken
    # starlette re-raises after answering (so the server logs it); see the answer, not the raise
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://bmc", headers=BASIC) as client:
        r = await client.get("/redfish/v1/Systems/vm1")
    assert r.status_code == 500 and code(r) == "InternalError"
    assert "bug" not in r.text


@pytest.mark.parametrize(
    "raw",
    [b"[" * 30000 + b"]" * 30000, b'{"ResetType": "On"', b"\xff\xfe", b"null", b'{"ResetType": NaN}'],
)
async def test_hostile_bodies_are_4xx(client, machine, raw) -> None:
    r = await client.post(
        "/redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.text
    assert machine.calls == []


async def test_no_request_gets_a_500(client, machine) -> None:
    from test_redfish_resources import crawl

    uris = [
        *await crawl(client),
        "/redfish/v1/Systems/vm1/Actions/ComputerSystem.Reset",
        "/redfish/v1/Managers/BMC/Actions/Manager.Reset",
        "/redfish/v1/SessionService/Sessions/Members",
    ]
    bodies = [b"", b"{}", b'{"x": 1}', b'{"Boot": null}', b'{"ResetType": null}', b"garbage"]
    for uri in uris:
        for method in ("GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"):
            for body in bodies:
                r = await client.request(
                    method, uri, content=body, headers={"Content-Type": "application/json"}
                )
                assert r.status_code < 500, f"{method} {uri} {body!r} -> {r.status_code} {r.text}"
