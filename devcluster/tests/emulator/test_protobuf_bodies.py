"""Protobuf request bodies: decoded by schema, and every malformed one a 400/415 Status, never a 500
and never a half-read object acted on. (kubectl's real encoder is exercised in
tests/contract/test_kubectl_generators_and_impersonation.py and test_rbac_kubectl.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.protobuf import MAGIC, decode
from vmbmc_devcluster.testing.emulator_client import emulator_client
from vmbmc_devcluster.testing.k8s_protobuf import envelope, field, ssar

PROTOBUF = {"Content-Type": "application/vnd.kubernetes.protobuf"}


def test_a_review_decodes_by_schema_and_skips_unknown_fields() -> None:
    body = ssar(
        verb="update", group="subresources.kubevirt.io", resource="virtualmachines", subresource="start"
    )
    body += b""  # the envelope's trailing fields (contentEncoding/contentType) may be absent
    decoded = decode(body)
    assert decoded == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "verb": "update",
                "group": "subresources.kubevirt.io",
                "resource": "virtualmachines",
                "subresource": "start",
            }
        },
    }
    unknown = envelope("v1", "ConfigMap", field(99, b"future") + field(2, field(1, b"k") + field(2, b"")))
    assert decode(unknown) == {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": ""}}


def test_negative_int64_and_bytes_fields() -> None:
    spec = field(4, (1 << 64) - 5)  # expirationSeconds -5, two's complement
    token = decode(envelope("authentication.k8s.io/v1", "TokenRequest", field(2, spec)))
    assert token["spec"] == {"expirationSeconds": -5}
    secret = decode(envelope("v1", "Secret", field(2, field(1, b"password") + field(2, b"\x00\xff"))))
    assert secret["data"] == {"password": "AP8="}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not protobuf at all", 400),  # no k8s envelope
        (MAGIC, 400),  # an envelope with nothing in it
        (MAGIC + b"\x0a\xff", 400),  # a length running past the end
        (MAGIC + b"\x0a", 400),  # a truncated varint
        (MAGIC + b"\x0b", 400),  # wire type 3 (groups) is not used by Kubernetes
        (MAGIC + b"\x00\x01", 400),  # field number 0
        (envelope("v1", "Pod", b""), 415),  # a kind without a schema here
        (envelope("", "", b""), 400),
        (envelope("v1", "ConfigMap", field(2, field(1, b"\xff\xfe") + field(2, b"v"))), 400),  # not UTF-8
        (envelope("v1", "Secret", field(3, 7)), 400),  # a string field sent as a varint
        (envelope("v1", "Secret", field(1, 7)), 400),  # metadata sent as a varint
        (MAGIC + field(1, field(1, b"v1") + field(2, b"Secret")) + field(3, b"gzip"), 400),
    ],
)
def test_malformed_bodies(body: bytes, code: int) -> None:
    with pytest.raises(ApiError) as err:
        decode(body)
    assert err.value.code == code


@pytest.fixture
def client() -> Iterator[TestClient]:
    with emulator_client() as c:
        c.headers["Authorization"] = "Bearer admin"
        yield c


def test_over_http_every_bad_body_is_a_status_and_nothing_is_created(client: TestClient) -> None:
    for body in (b"\x00\x01garbage", MAGIC + b"\x0a\xff", envelope("v1", "ConfigMap", field(1, 5))):
        answer = client.post("/api/v1/namespaces/default/configmaps", content=body, headers=PROTOBUF)
        assert answer.status_code == 400, answer.text
        assert answer.json()["kind"] == "Status"
    assert client.get("/api/v1/namespaces/default/configmaps").json()["items"] == []
    answer = client.post(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        content=ssar(namespace="default", verb="get", resource="pods"),
        headers=PROTOBUF,
    )
    assert answer.status_code == 201 and answer.json()["status"]["allowed"] is True


def test_a_body_of_another_kind_than_the_url_is_refused(client: TestClient) -> None:
    """A Secret posted to the ConfigMaps URL must not be stored as a ConfigMap."""
    secret = envelope(
        "v1", "Secret", field(1, field(1, b"sneaky")) + field(2, field(1, b"k") + field(2, b"v"))
    )
    answer = client.post("/api/v1/namespaces/default/configmaps", content=secret, headers=PROTOBUF)
    assert answer.status_code == 400, answer.text
    assert client.get("/api/v1/namespaces/default/configmaps/sneaky").status_code == 404
