"""Request bodies: JSON objects only, duplicates and malformed JSON answered with Base messages."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from vmbmc.redfish.errors import RedfishError


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Duplicate(key)
        result[key] = value
    return result


def parse_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates)
    except _Duplicate as exc:
        raise RedfishError(400, "PropertyDuplicate", exc.key) from None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise RedfishError(400, "MalformedJSON") from None
    if not isinstance(value, dict):
        raise RedfishError(400, "MalformedJSON", resolution="The request body must be a JSON object.")
    return value


async def read_object(request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request's JSON object. An empty body is `{}` when `allow_empty` (sushy's EjectMedia-style
    actions post no body and no Content-Type), else MalformedJSON."""
    raw = await request.body()
    if not raw.strip():
        if allow_empty:
            return {}
        raise RedfishError(400, "MalformedJSON", resolution="The request needs a JSON object body.")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        raise RedfishError(415, "HeaderInvalid", f"Content-Type: {content_type}",
                           resolution="Send the body as application/json.")
    return parse_object(raw)


def is_annotation(key: str) -> bool:
    """`@odata.etag`, `Foo@Redfish.AllowableValues` and the like: metadata, never a value to set."""
    return "@" in key
