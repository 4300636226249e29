"""The one guarded read-modify-write of the kbmc and the controller: a merge patch carrying the
resourceVersion it was computed from, so two writers never clobber each other; on 409 (someone wrote in
between) the object is read again and the patch computed again. resourceVersions are opaque: only the
API server compares them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from vmbmc.k8s.client import MERGE_PATCH, ApiClient, ApiError

CONFLICT_RETRIES = 8

MakePatch = Callable[[dict[str, Any]], dict[str, Any] | None]


async def guarded_patch(
    api: ApiClient,
    path: str,
    make_patch: MakePatch,
    *,
    subresource: str = "",
    current: dict[str, Any] | None = None,
    retries: int = CONFLICT_RETRIES,
) -> dict[str, Any] | None:
    """Patch the object at `path` (its `subresource`, e.g. "status") with `make_patch(obj)`.

    `current`: the object as the caller last saw it (a cache), tried first; a stale one costs a 409 and a
    read. `make_patch` returns the merge patch body, or None when `obj` already shows what the caller
    wants. Returns the object as written (or as read, when nothing was to be written); None when it is
    gone (404). Raises ApiError for anything else, and a 409 after `retries` conflicts."""
    obj = current
    for attempt in range(retries):
        if obj is None:
            try:
                obj = await api.request("GET", path)
            except ApiError as err:
                if err.code == 404:
                    return None
                raise
        assert obj is not None
        body = make_patch(obj)
        if body is None:
            return obj
        body.setdefault("metadata", {})["resourceVersion"] = obj["metadata"]["resourceVersion"]
        target = f"{path}/{subresource}" if subresource else path
        try:
            written: dict[str, Any] = await api.request("PATCH", target, body=body, content_type=MERGE_PATCH)
            return written
        except ApiError as err:
            if err.code == 404:
                return None
            if err.code != 409 or attempt == retries - 1:
                raise
        obj = None
        if attempt:
            await asyncio.sleep(0.05 * attempt)  # several writers in a row: let them pass
    raise ApiError(409, "Conflict", f"{path}: gave up after {retries} conflicts")
