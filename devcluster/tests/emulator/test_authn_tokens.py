"""Authentication over HTTP (in-process): admin token, TokenRequest, ServiceAccount tokens, anonymous."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from vmbmc_devcluster.emulator.authn import ADMIN
from vmbmc_devcluster.emulator.emulator import Emulator
from vmbmc_devcluster.emulator.server import create_app

ADMIN_TOKEN = "admin-token-for-tests"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


@pytest.fixture(params=["RBAC", "AlwaysAllow"])
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    asyncio.set_event_loop(asyncio.new_event_loop())  # earlier tests may have closed the loop
    emu = Emulator(authorization=request.param)
    emu.security.authn.add_static_token(ADMIN_TOKEN, ADMIN)
    emu.store.create(emu.registry.get("", "v1", "namespaces"), {"metadata": {"name": "ns"}})
    emu.store.create(emu.registry.get("", "v1", "serviceaccounts"), {"metadata": {"name": "sa"}}, "ns")
    with TestClient(create_app(emu), base_url="http://emulator") as c:
        c.emu = emu  # type: ignore[attr-defined]
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _raw_bearer(token: str) -> dict:
    """Non-ASCII tokens go on the wire as latin-1 bytes, as a hostile client would send them."""
    return {"Authorization": f"Bearer {token}".encode("latin-1")}


def _token(client: TestClient, body: dict | None = None, sa: str = "sa") -> dict:
    r = client.post(
        f"/api/v1/namespaces/ns/serviceaccounts/{sa}/token", json=body or {}, headers=_bearer(ADMIN_TOKEN)
    )
    return {"code": r.status_code, **r.json()}


def _whoami(client: TestClient, headers: dict) -> tuple[int, dict]:
    r = client.post(
        SSR, json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, headers=headers
    )
    return r.status_code, r.json()


def _unauthorized(body: dict) -> bool:
    return body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


def test_admin_token_is_cluster_admin(client: TestClient) -> None:
    code, body = _whoami(client, _bearer(ADMIN_TOKEN))
    assert code == 201
    assert body["status"]["userInfo"] == {
        "username": "admin",
        "groups": ["system:masters", "system:authenticated"],
    }


def test_token_request_answers_like_kube_apiserver(client: TestClient) -> None:
    answer = _token(client, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    assert answer["code"] == 201
    assert answer["kind"] == "TokenRequest" and answer["apiVersion"] == "authentication.k8s.io/v1"
    assert answer["spec"]["expirationSeconds"] == 3600
    assert answer["status"]["expirationTimestamp"].endswith("Z")
    code, body = _whoami(client, _bearer(answer["status"]["token"]))
    assert code == 201
    sa = client.emu.store.get(client.emu.registry.get("", "v1", "serviceaccounts"), "ns", "sa")  # type: ignore[attr-defined]
    assert body["status"]["userInfo"] == {
        "username": "system:serviceaccount:ns:sa",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"],
        "uid": sa["metadata"]["uid"],
    }


def test_token_request_expiration_seconds(client: TestClient) -> None:
    assert _token(client, {"spec": {"expirationSeconds": 7200}})["spec"]["expirationSeconds"] == 7200
    short = _token(client, {"spec": {"expirationSeconds": 60}})
    assert short["code"] == 422 and short["reason"] == "Invalid"
    assert "may not specify a duration less than 10 minutes" in short["message"]
    missing = _token(client, sa="nobody")
    assert missing["code"] == 404 and missing["message"] == 'serviceaccounts "nobody" not found'


def test_expired_token_is_401(client: TestClient) -> None:
    token, _ = client.emu.security.authn.issue_service_account_token("ns", "sa", expiration=-1)  # type: ignore[attr-defined]
    code, body = _whoami(client, _bearer(token))
    assert code == 401 and _unauthorized(body)


def test_token_of_a_deleted_or_recreated_service_account_is_401(client: TestClient) -> None:
    token = _token(client)["status"]["token"]
    assert _whoami(client, _bearer(token))[0] == 201
    admin = _bearer(ADMIN_TOKEN)
    assert client.delete("/api/v1/namespaces/ns/serviceaccounts/sa", headers=admin).status_code == 200
    code, body = _whoami(client, _bearer(token))
    assert code == 401 and _unauthorized(body)
    # a new ServiceAccount of the same name has a new uid: the old token stays dead
    client.post("/api/v1/namespaces/ns/serviceaccounts", json={"metadata": {"name": "sa"}}, headers=admin)
    assert _whoami(client, _bearer(token))[0] == 401


def test_token_bound_to_a_pod_dies_with_the_pod(client: TestClient) -> None:
    admin = _bearer(ADMIN_TOKEN)
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    assert client.post("/api/v1/namespaces/ns/pods", json=pod, headers=admin).status_code == 201
    answer = _token(client, {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}})
    assert answer["code"] == 201, answer
    token = answer["status"]["token"]
    assert _whoami(client, _bearer(token))[0] == 201
    client.delete("/api/v1/namespaces/ns/pods/p?gracePeriodSeconds=0", headers=admin)
    assert _whoami(client, _bearer(token))[0] == 401
    gone = _token(client, {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p"}}})
    assert gone["code"] == 404


def _forge(token: str, **changes: object) -> str:
    header, claims, sig = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    doc.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{sig}"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: _forge(t, sub="system:serviceaccount:kube-system:admin", exp=9999999999),
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # bad signature
        lambda t: t.split(".", 1)[1],  # two parts
        lambda t: t + ".x",
        lambda t: "not-a-token",
        lambda t: "a.b.c",
        lambda t: "\u00e9\u00e9\u00e9",
    ],
)
def test_forged_and_malformed_tokens_are_401(client: TestClient, mangle) -> None:  # type: ignore[no-untyped-def]
    token = _token(client)["status"]["token"]
    code, body = _whoami(client, _raw_bearer(mangle(token)))
    assert code == 401 and _unauthorized(body)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",  # no token: not a bearer credential at all
        "Bearer  x",  # empty token (two spaces): anonymous, as upstream
        "Basic YWRtaW46YWRtaW4=",  # no basic auth configured: anonymous
        "Token abc",
    ],
)
def test_non_bearer_headers_are_anonymous(client: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = client.get("/version", headers=headers)
    assert r.status_code == 200
    code, body = _whoami(client, headers)
    if client.emu.security.rbac_enabled:  # type: ignore[attr-defined]
        assert code == 403
        assert body["message"] == (
            'selfsubjectreviews.authentication.k8s.io is forbidden: User "system:anonymous" cannot create '
            'resource "selfsubjectreviews" in API group "authentication.k8s.io" at the cluster scope'
        )
    else:
        assert code == 201
        assert body["status"]["userInfo"] == {
            "username": "system:anonymous",
            "groups": ["system:unauthenticated"],
        }


def test_bearer_scheme_is_case_insensitive(client: TestClient) -> None:
    code, body = _whoami(client, {"Authorization": f"bearer {ADMIN_TOKEN}"})
    assert code == 201 and body["status"]["userInfo"]["username"] == "admin"


def test_anonymous_under_rbac(client: TestClient) -> None:
    if not client.emu.security.rbac_enabled:  # type: ignore[attr-defined]
        assert client.get("/api/v1/namespaces").status_code == 200  # AlwaysAllow, as before issue 12
        return
    for path in ("/version", "/healthz"):
        assert client.get(path).status_code != 403, path
    r = client.get("/api")
    assert r.status_code == 403
    assert r.json()["message"] == 'forbidden: User "system:anonymous" cannot get path "/api"'
    r = client.get("/api/v1/namespaces/ns/secrets")
    assert r.status_code == 403 and r.json()["reason"] == "Forbidden"
