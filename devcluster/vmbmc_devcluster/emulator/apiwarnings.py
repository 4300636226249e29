"""Warnings an API request answers with: the `Warning: 299 - "..."` response headers kubectl prints.

kube-apiserver's warning recorder lives in the request context; admission plug-ins add to it and the
headers go out with the response (whatever its status). Here the server opens a `recording()` around
each request and admission code calls `add_warning` (a no-op outside a request, e.g. in the
emulator's own controllers, as their client would discard the headers anyway).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_WARNINGS: ContextVar[list[str] | None] = ContextVar("vmbmc_api_warnings", default=None)

# k8s.io/apiserver/pkg/warning: at most 4 KiB per warning, 128 KiB in all
MAX_WARNING = 4 * 1024
MAX_TOTAL = 128 * 1024


def add_warning(text: str) -> None:
    """Record a warning for the current request (duplicates collapse, as in kube-apiserver)."""
    warnings = _WARNINGS.get()
    if warnings is None or not text or text in warnings:
        return
    if len(text) > MAX_WARNING:
        text = text[: MAX_WARNING - 3] + "..."
    if sum(len(w) for w in warnings) + len(text) > MAX_TOTAL:
        return
    warnings.append(text)


@contextmanager
def recording() -> Iterator[list[str]]:
    """Collect the warnings added while the block runs (one request)."""
    warnings: list[str] = []
    token = _WARNINGS.set(warnings)
    try:
        yield warnings
    finally:
        _WARNINGS.reset(token)


def header_value(text: str) -> str:
    """net.NewWarningHeader(299, "-", text): the text quoted, with `"` and `\\` escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def add_headers(response: object, warnings: list[str]) -> None:
    """Append one `Warning` header per recorded warning to a Starlette response."""
    for text in warnings:
        # HTTP header values are latin-1: anything else is replaced rather than failing the request
        value = header_value(text).encode("latin-1", "replace").decode("latin-1")
        response.headers.append("Warning", value)  # type: ignore[attr-defined]
