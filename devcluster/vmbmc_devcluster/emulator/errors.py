"""Kubernetes API errors as `Status` objects (what kube-apiserver answers on every failure)."""

from __future__ import annotations

from typing import Any

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _resource(rt: Any) -> str:
    """`pods` for core, `virtualmachines.kubevirt.io` for a group, as kube-apiserver names them."""
    return rt.plural if not rt.group else f"{rt.plural}.{rt.group}"


def _details(rt: Any, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    return details


def not_found(rt: Any, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_resource(rt)} "{name}" not found', details=_details(rt, name))


def already_exists(rt: Any, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{_resource(rt)} "{name}" already exists', details=_details(rt, name)
    )


def conflict(rt: Any, name: str, msg: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_resource(rt)} "{name}": {msg}',
        details=_details(rt, name),
    )


def invalid(rt: Any, name: str, causes: list[dict], message: str | None = None) -> ApiError:
    from vmbmc_devcluster.emulator.schema import invalid_message, qualified_kind

    text = message or invalid_message(qualified_kind(rt.kind, rt.group), name, causes)
    details = {**_details(rt, name), "kind": rt.kind, "causes": causes}
    return ApiError(422, "Invalid", text, details=details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)
