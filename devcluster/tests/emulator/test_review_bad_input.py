"""Bad input to the review APIs and the filter chain, answered as kube-apiserver answers it: a Status
(400 for what its decoder cannot read, 422 for what its validation refuses, 403/405 for unknown verbs),
never a 500 and never an allow. (Malformed Authorization headers: test_authn_tokens.py; malformed
protobuf: test_protobuf_bodies.py; impersonation headers: test_impersonation.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from vmbmc_devcluster.testing.emulator_client import emulator_client

ADMIN_H = {"Authorization": "Bearer admin"}
AUTHZ = "/apis/authorization.k8s.io/v1"
SSAR = f"{AUTHZ}/selfsubjectaccessreviews"
SAR = f"{AUTHZ}/subjectaccessreviews"
LSAR = f"{AUTHZ}/namespaces/ns/localsubjectaccessreviews"
SSRR = f"{AUTHZ}/selfsubjectrulesreviews"
SA = "system:serviceaccount:ns:sa"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with emulator_client(raise_server_exceptions=False) as c:
        yield c


def _callers(client: TestClient) -> list[dict[str, str]]:
    return [ADMIN_H, client.sa]  # type: ignore[attr-defined]


def _status(r: Any, code: int, reason: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == reason and body["code"] == code, body
    return body


@pytest.mark.parametrize(
    "spec",
    [
        None,
        {},
        {"resourceAttributes": None},
        {"nonResourceAttributes": None, "resourceAttributes": None},
    ],
)
def test_a_review_with_neither_attributes_is_422(client: TestClient, spec: Any) -> None:
    for caller in _callers(client):
        body = _status(client.post(SSAR, json={"spec": spec}, headers=caller), 422, "Invalid")
        assert body["message"] == (
            'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid '
            'value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified'
        )


def test_a_review_with_both_attributes_is_422(client: TestClient) -> None:
    spec = {"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"verb": "get", "path": "/"}}
    body = _status(client.post(SSAR, json={"spec": spec}, headers=client.sa), 422, "Invalid")  # type: ignore[attr-defined]
    assert "cannot be specified in combination with resourceAttributes" in body["message"]


@pytest.mark.parametrize(
    ("url", "spec", "message"),
    [
        (SSAR, [], "cannot unmarshal array into Go struct field SelfSubjectAccessReview.spec"),
        (SSAR, "x", "cannot unmarshal string into Go struct field SelfSubjectAccessReview.spec"),
        (
            SSAR,
            {"resourceAttributes": "pods"},
            "cannot unmarshal string into Go struct field "
            "SelfSubjectAccessReviewSpec.spec.resourceAttributes of type v1.ResourceAttributes",
        ),
        (
            SSAR,
            {"resourceAttributes": {"verb": ["get"], "resource": "pods"}},
            "cannot unmarshal array into Go struct field ResourceAttributes.spec.resourceAttributes.verb of "
            "type string",
        ),
        (SSAR, {"resourceAttributes": {"verb": "get", "namespace": 5}}, "cannot unmarshal number"),
        (SSAR, {"nonResourceAttributes": {"verb": "get", "path": True}}, "cannot unmarshal bool"),
        (SSRR, {"namespace": ["ns"]}, "spec.namespace of type string"),
        (SAR, {"user": "bob", "groups": "system:masters", "resourceAttributes": {}}, "spec.groups"),
        (SAR, {"user": "bob", "groups": ["a", 1], "resourceAttributes": {}}, "spec.groups"),
        (SAR, {"user": {"name": "bob"}, "resourceAttributes": {}}, "spec.user"),
        (SAR, {"user": "bob", "extra": {"k": "v"}, "resourceAttributes": {}}, "of type v1.ExtraValue"),
        (SAR, {"user": "bob", "extra": ["k"], "resourceAttributes": {}}, "spec.extra"),
        (LSAR, {"user": "bob", "uid": 7, "resourceAttributes": {"namespace": "ns"}}, "spec.uid"),
    ],
)
def test_fields_of_the_wrong_type_are_400(client: TestClient, url: str, spec: Any, message: str) -> None:
    body = _status(client.post(url, json={"spec": spec}, headers=ADMIN_H), 400, "BadRequest")
    assert message in body["message"], body["message"]
    kind = {SSAR: "SelfSubjectAccessReview", SSRR: "SelfSubjectRulesReview"}.get(url)
    if kind:
        assert body["message"].startswith(f'{kind} in version "v1" cannot be handled as a {kind}: json: ')


def test_null_fields_are_zero_values_as_in_go(client: TestClient) -> None:
    spec = {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": None, "name": None}}
    r = client.post(SSAR, json={"spec": spec}, headers=ADMIN_H)
    assert r.status_code == 201 and r.json()["status"]["allowed"] is True
    spec = {"user": "bob", "groups": None, "extra": {"k": None}, "resourceAttributes": {"verb": "get"}}
    r = client.post(SAR, json={"spec": spec}, headers=ADMIN_H)
    assert r.status_code == 201 and r.json()["status"]["allowed"] is False


@pytest.mark.parametrize("verb", ["frobnicate", "", "GET", "impersonate", "escalate"])
def test_unknown_verbs_are_reviewed_not_refused(client: TestClient, verb: str) -> None:
    """Any verb string is reviewed; only a `*` rule matches one RBAC does not know (cluster-admin's)."""
    spec = {"resourceAttributes": {"verb": verb, "resource": "pods", "namespace": "ns"}}
    admin = client.post(SSAR, json={"spec": spec}, headers=ADMIN_H)
    assert admin.status_code == 201 and admin.json()["status"]["allowed"] is True
    sa = client.post(SSAR, json={"spec": spec}, headers=client.sa)  # type: ignore[attr-defined]
    assert sa.status_code == 201 and sa.json()["status"]["allowed"] is False
    non = {"nonResourceAttributes": {"verb": verb, "path": "/version"}}
    sa = client.post(SSAR, json={"spec": non}, headers=client.sa)  # type: ignore[attr-defined]
    assert sa.status_code == 201 and sa.json()["status"]["allowed"] is False


@pytest.mark.parametrize("method", ["PROPFIND", "TRACE", "FOO"])
def test_unknown_http_methods(client: TestClient, method: str) -> None:
    """RequestInfo's verb for an unknown method is "": refused (with the empty verb in kube-apiserver's
    sentence) to all but cluster-admin, who gets the handler's 405."""
    _status(client.request(method, "/api/v1/namespaces/ns/pods", headers=ADMIN_H), 405, "MethodNotAllowed")
    for caller, user in ((client.sa, SA), ({}, "system:anonymous")):  # type: ignore[attr-defined]
        body = _status(client.request(method, "/api/v1/namespaces/ns/pods", headers=caller), 403, "Forbidden")
        assert body["message"] == (
            f'pods is forbidden: User "{user}" cannot  resource "pods" in API group "" in the namespace "ns"'
        )


def test_local_subject_access_review_validation(client: TestClient) -> None:
    ok = {"user": "bob", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "ns"}}
    r = client.post(LSAR, json={"spec": ok}, headers=ADMIN_H)
    assert r.status_code == 201 and r.json()["metadata"]["namespace"] == "ns"
    other_ns = {**ok, "resourceAttributes": {"verb": "get", "namespace": "kube-system"}}
    body = _status(client.post(LSAR, json={"spec": other_ns}, headers=ADMIN_H), 422, "Invalid")
    assert body["message"] == (
        'LocalSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes.namespace: '
        'Invalid value: "kube-system": must match metadata.namespace'
    )
    non = {"user": "bob", "nonResourceAttributes": {"verb": "get", "path": "/"}}
    body = _status(client.post(LSAR, json={"spec": non}, headers=ADMIN_H), 422, "Invalid")
    assert (
        "spec.nonResourceAttributes" in body["message"]
        and "disallowed on this kind of request" in body["message"]
    )
    nobody = {"resourceAttributes": ok["resourceAttributes"]}
    body = _status(client.post(LSAR, json={"spec": nobody}, headers=ADMIN_H), 422, "Invalid")
    assert "at least one of user or group must be specified" in body["message"]
    moved = {"metadata": {"namespace": "kube-system"}, "spec": ok}
    body = _status(client.post(LSAR, json=moved, headers=ADMIN_H), 400, "BadRequest")
    assert (
        body["message"]
        == "the namespace of the provided object does not match the namespace sent on the request"
    )


def test_subject_access_review_without_a_subject_is_422(client: TestClient) -> None:
    body = _status(
        client.post(SAR, json={"spec": {"resourceAttributes": {"verb": "get"}}}, headers=ADMIN_H),
        422,
        "Invalid",
    )
    assert body["message"].endswith(
        'spec.user: Invalid value: "": at least one of user or group must be specified'
    )


def test_a_rules_review_without_a_namespace_is_400(client: TestClient) -> None:
    for spec in (None, {}, {"namespace": ""}):
        body = _status(client.post(SSRR, json={"spec": spec}, headers=client.sa), 400, "BadRequest")  # type: ignore[attr-defined]
        assert body["message"] == "no namespace on request"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer\tadmin",  # only a space separates the scheme: not a bearer credential, anonymous
        "B\u00e9arer admin",
        "Bearer, admin",
    ],
)
def test_more_malformed_authorization_headers_are_anonymous(client: TestClient, header: str) -> None:
    r = client.get("/api/v1/namespaces/ns/secrets", headers={"Authorization": header.encode("latin-1")})  # type: ignore[dict-item]
    body = _status(r, 403, "Forbidden")
    assert 'User "system:anonymous"' in body["message"]


def test_a_token_followed_by_more_words_is_that_token(client: TestClient) -> None:
    """bearertoken.Authenticator splits on the first two spaces and reads the second part, as here."""
    r = client.get("/api/v1/namespaces/ns/secrets", headers={"Authorization": "Bearer admin trailing words"})
    assert r.status_code == 200
    r = client.get("/api/v1/namespaces/ns/secrets", headers={"Authorization": "Bearer nope admin"})
    _status(r, 401, "Unauthorized")
