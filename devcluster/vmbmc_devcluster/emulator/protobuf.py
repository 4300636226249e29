"""Kubernetes protobuf request bodies, decoded into the JSON form the emulator stores.

kubectl posts protobuf (`Content-Type: application/vnd.kubernetes.protobuf`) for built-in types whenever
it builds the object itself: `auth can-i` / `auth whoami` (the review APIs), `create token`, and the
generators `create namespace|serviceaccount|configmap|secret|role|clusterrole|rolebinding|
clusterrolebinding`. It accepts JSON back (`Accept: application/vnd.kubernetes.protobuf,application/json`),
so only requests are decoded.

The body is "k8s\\0" + runtime.Unknown{typeMeta(1){apiVersion(1), kind(2)}, raw(2), contentEncoding(3),
contentType(4)}; `raw` is the object's message. The schemas below are the field numbers of
k8s.io/api's and k8s.io/apimachinery's generated.proto for the kinds listed; a kind without one is
answered 415, as before. Unknown fields are skipped (forward compatible, as protobuf is).
"""

from __future__ import annotations

import base64
from typing import Any

from vmbmc_devcluster.emulator.errors import ApiError, bad_request

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# A schema maps a field number to (JSON name, type). Types: "string", "bytes" (base64 in JSON), "bool",
# "int" (int32/int64, two's complement), a nested schema (dict), ("repeated", type), ("map", value type).
Schema = dict[int, tuple[str, Any]]

STRINGS = ("repeated", "string")
LABEL_SELECTOR: Schema = {
    1: ("matchLabels", ("map", "string")),
    2: (
        "matchExpressions",
        ("repeated", {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", STRINGS)}),
    ),
}
OWNER_REFERENCE: Schema = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
# Timestamps (8, 9) and managedFields (17) are set by the server; a client's are ignored.
OBJECT_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    10: ("deletionGracePeriodSeconds", "int"),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    13: ("ownerReferences", ("repeated", OWNER_REFERENCE)),
    14: ("finalizers", STRINGS),
}
RESOURCE_ATTRIBUTES: Schema = {
    1: ("namespace", "string"),
    2: ("verb", "string"),
    3: ("group", "string"),
    4: ("version", "string"),
    5: ("resource", "string"),
    6: ("subresource", "string"),
    7: ("name", "string"),
    8: ("fieldSelector", {1: ("rawSelector", "string")}),
    9: ("labelSelector", {1: ("rawSelector", "string")}),
}
NON_RESOURCE_ATTRIBUTES: Schema = {1: ("path", "string"), 2: ("verb", "string")}
EXTRA = ("map", {1: ("items", STRINGS)})
ACCESS_REVIEW_SPEC: Schema = {
    1: ("resourceAttributes", RESOURCE_ATTRIBUTES),
    2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES),
    3: ("user", "string"),
    4: ("groups", STRINGS),
    5: ("extra", EXTRA),
    6: ("uid", "string"),
}
POLICY_RULE: Schema = {
    1: ("verbs", STRINGS),
    2: ("apiGroups", STRINGS),
    3: ("resources", STRINGS),
    4: ("resourceNames", STRINGS),
    5: ("nonResourceURLs", STRINGS),
}
SUBJECT: Schema = {
    1: ("kind", "string"),
    2: ("apiGroup", "string"),
    3: ("name", "string"),
    4: ("namespace", "string"),
}
ROLE_REF: Schema = {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")}
BINDING: Schema = {
    1: ("metadata", OBJECT_META),
    2: ("subjects", ("repeated", SUBJECT)),
    3: ("roleRef", ROLE_REF),
}


def _reviewed(spec: Schema) -> Schema:
    return {1: ("metadata", OBJECT_META), 2: ("spec", spec)}


KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Namespace"): {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", STRINGS)})},
    ("v1", "ServiceAccount"): {
        1: ("metadata", OBJECT_META),
        2: (
            "secrets",
            ("repeated", {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string")}),
        ),
        3: ("imagePullSecrets", ("repeated", {1: ("name", "string")})),
        4: ("automountServiceAccountToken", "bool"),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", OBJECT_META),
        2: ("data", ("map", "string")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
    ("v1", "Secret"): {
        1: ("metadata", OBJECT_META),
        2: ("data", ("map", "bytes")),
        3: ("type", "string"),
        4: ("stringData", ("map", "string")),
        5: ("immutable", "bool"),
    },
    ("rbac.authorization.k8s.io/v1", "Role"): {
        1: ("metadata", OBJECT_META),
        2: ("rules", ("repeated", POLICY_RULE)),
    },
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): {
        1: ("metadata", OBJECT_META),
        2: ("rules", ("repeated", POLICY_RULE)),
        3: ("aggregationRule", {1: ("clusterRoleSelectors", ("repeated", LABEL_SELECTOR))}),
    },
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): BINDING,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): BINDING,
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): _reviewed(
        {
            1: ("resourceAttributes", RESOURCE_ATTRIBUTES),
            2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES),
        }
    ),
    ("authorization.k8s.io/v1", "SubjectAccessReview"): _reviewed(ACCESS_REVIEW_SPEC),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): _reviewed(ACCESS_REVIEW_SPEC),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): _reviewed({1: ("namespace", "string")}),
    ("authentication.k8s.io/v1", "SelfSubjectReview"): {1: ("metadata", OBJECT_META)},
    ("authentication.k8s.io/v1", "TokenReview"): _reviewed(
        {1: ("token", "string"), 2: ("audiences", STRINGS)}
    ),
    ("authentication.k8s.io/v1", "TokenRequest"): _reviewed(
        {
            1: ("audiences", STRINGS),
            3: (
                "boundObjectRef",
                {
                    1: ("kind", "string"),
                    2: ("apiVersion", "string"),
                    3: ("name", "string"),
                    4: ("uid", "string"),
                },
            ),
            4: ("expirationSeconds", "int"),
        }
    ),
}


def _malformed(why: str) -> ApiError:
    return bad_request(f"malformed protobuf body: {why}")


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one message: varints as int, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            if i >= len(data) or shift > 63:
                raise _malformed("truncated varint")
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _malformed("field number 0")
        if wire == 0:
            out.append((number, varint()))
        elif wire == 2:
            n = varint()
            if i + n > len(data):
                raise _malformed("truncated field")
            out.append((number, data[i : i + n]))
            i += n
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            if i > len(data):
                raise _malformed("truncated fixed-width field")
        else:
            raise _malformed(f"unsupported wire type {wire}")
    return out


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "int":
        if not isinstance(value, int):
            raise _malformed("expected a varint")
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == "bool":
        if not isinstance(value, int):
            raise _malformed("expected a varint")
        return bool(value)
    if not isinstance(value, bytes):
        raise _malformed("expected a length-delimited field")
    if kind == "bytes":
        return base64.b64encode(value).decode()
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("a string field is not UTF-8") from None


def _value(kind: Any, value: int | bytes) -> Any:
    if isinstance(kind, dict):
        if not isinstance(value, bytes):
            raise _malformed("expected an embedded message")
        return decode_message(value, kind)
    return _scalar(kind, value)


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "repeated":
            out.setdefault(name, []).append(_value(kind[1], value))
        elif isinstance(kind, tuple) and kind[0] == "map":
            if not isinstance(value, bytes):
                raise _malformed("expected a map entry")
            entry = dict(fields(value))
            key = _scalar("string", entry.get(1, b""))
            out.setdefault(name, {})[key] = _value(kind[1], entry.get(2, b""))
        else:
            decoded = _value(kind, value)
            # Go's encoder writes empty strings and zeros of non-pointer fields; their JSON is omitempty
            if decoded == "" or (decoded == 0 and kind == "int"):
                continue
            out[name] = decoded
    return out


def decode(raw: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object the rest of the emulator expects (415 for a kind this
    module has no schema for, 400 for a malformed body)."""
    if not raw.startswith(MAGIC):
        raise bad_request("protobuf body without the k8s envelope")
    envelope = dict(fields(raw[len(MAGIC) :]))
    type_meta = envelope.get(1, b"")
    inner = envelope.get(2, b"")
    if not isinstance(type_meta, bytes) or not isinstance(inner, bytes):
        raise _malformed("bad envelope")
    if envelope.get(3):
        raise bad_request("protobuf bodies with a content encoding are not supported")
    meta = decode_message(type_meta, {1: ("apiVersion", "string"), 2: ("kind", "string")})
    api_version, kind = meta.get("apiVersion", ""), meta.get("kind", "")
    if not kind:
        raise _malformed("no kind in its type meta")
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - the emulator decodes protobuf only for "
            f"{', '.join(sorted(k for _, k in KINDS))}; send {kind or 'it'} as application/json",
        )
    return {"apiVersion": api_version, "kind": kind, **decode_message(inner, schema)}
