"""Just enough Kubernetes protobuf to read a TokenRequest: `kubectl create token` sends nothing else.

The body is "k8s\\0" + runtime.Unknown{raw: TokenRequest}; TokenRequest{spec(2): TokenRequestSpec
{audiences(1) repeated string, boundObjectRef(3) {kind(1), apiVersion(2), name(3), uid(4)},
expirationSeconds(4) int64}} (k8s.io/api/authentication/v1/generated.proto).
"""

from __future__ import annotations

from typing import Any

from vmbmc.emulator.errors import bad_request

MAGIC = b"k8s\x00"


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            if i >= len(data) or shift > 63:
                raise bad_request("malformed protobuf body")
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 2:
            n = varint()
            if i + n > len(data):
                raise bad_request("malformed protobuf body")
            out.append((number, data[i : i + n]))
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise bad_request("malformed protobuf body")
    return out


def _text(v: int | bytes) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def decode_token_request(raw: bytes) -> dict[str, Any]:
    if not raw.startswith(MAGIC):
        raise bad_request("protobuf body without the k8s envelope")
    inner = next((v for n, v in _fields(raw[len(MAGIC) :]) if n == 2 and isinstance(v, bytes)), b"")
    spec: dict[str, Any] = {}
    for number, value in _fields(inner):
        if number != 2 or not isinstance(value, bytes):
            continue
        for n, v in _fields(value):
            if n == 1:
                spec.setdefault("audiences", []).append(_text(v))
            elif n == 4 and isinstance(v, int):
                spec["expirationSeconds"] = v - (1 << 64) if v >= 1 << 63 else v
            elif n == 3 and isinstance(v, bytes):
                names = {1: "kind", 2: "apiVersion", 3: "name", 4: "uid"}
                spec["boundObjectRef"] = {names[k]: _text(x) for k, x in _fields(v) if k in names}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
