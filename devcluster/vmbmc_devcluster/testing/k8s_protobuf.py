"""Kubernetes protobuf request bodies built by hand for tests: the wire format kubectl sends ("k8s\\0" +
runtime.Unknown{typeMeta(1){apiVersion(1), kind(2)}, raw(2)}), to reach cases kubectl never encodes."""

from __future__ import annotations

MAGIC = b"k8s\x00"
RESOURCE_ATTRIBUTES = {
    "namespace": 1,
    "verb": 2,
    "group": 3,
    "version": 4,
    "resource": 5,
    "subresource": 6,
    "name": 7,
}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes | int) -> bytes:
    """A varint field for an int, a length-delimited one for bytes."""
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return MAGIC + field(1, field(1, api_version.encode()) + field(2, kind.encode())) + field(2, raw)


def ssar(**attributes: str) -> bytes:
    """A SelfSubjectAccessReview{spec(2){resourceAttributes(1){...}}}; no attributes: a spec with neither
    field (k8s.io/api/authorization/v1/generated.proto)."""
    attrs = b"".join(field(RESOURCE_ATTRIBUTES[k], v.encode()) for k, v in attributes.items())
    spec = field(1, attrs) if attributes else b""
    return envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", field(2, spec))
