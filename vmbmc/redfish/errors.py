"""Redfish error bodies, and the one mapping of the state machine's errors onto HTTP.

Every error answer has `error.code`, `error.message` and `@Message.ExtendedInfo` with Base registry
messages (DSP0266 §9.6). `MachineError` → HTTP follows `vmbmc/machine/errors.py`:

| error              | status | Base message                                                   |
|--------------------|--------|----------------------------------------------------------------|
| Busy               | 503    | ServiceTemporarilyUnavailable + Retry-After                    |
| Refused            | 409    | ChassisPowerStateOnRequired (VM off) or ActionParameterValueConflict |
| NotSupported       | 400    | ActionParameterNotSupported / PropertyValueNotInList           |
| Invalid            | 400    | ActionParameterValueNotInList / PropertyValueNotInList         |
| NotFound           | 404    | ResourceNotFound                                               |
| Forbidden          | 403    | InsufficientPrivilege                                          |
| BackendUnavailable | 503    | ServiceTemporarilyUnavailable + Retry-After                    |
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from vmbmc.machine.errors import (
    BackendUnavailable,
    Busy,
    Forbidden,
    Invalid,
    MachineError,
    NotFound,
    NotSupported,
    Refused,
)
from vmbmc.redfish.registry import message

JSON_TYPE = "application/json; charset=utf-8"


class RedfishJSON(Response):
    """Compact JSON, UTF-8, `application/json` (Redfish clients need nothing more)."""

    media_type = JSON_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


class RedfishError(Exception):
    """An error answer: HTTP status plus one or more Base registry messages."""

    def __init__(
        self,
        status: int,
        message_id: str,
        *args: object,
        resolution: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.messages = [message(message_id, *args, resolution=resolution)]
        self.headers = dict(headers or {})
        super().__init__(self.messages[0]["Message"])

    def response(self) -> Response:
        return error_response(self.status, self.messages, self.headers)


def error_response(
    status: int, messages: list[dict[str, Any]], headers: Mapping[str, str] | None = None
) -> Response:
    first = messages[0]
    body = {
        "error": {
            "code": first["MessageId"],
            "message": first["Message"],
            "@Message.ExtendedInfo": messages,
        }
    }
    return RedfishJSON(body, status_code=status, headers=dict(headers or {}))


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def from_machine_error(
    exc: MachineError,
    *,
    parameter: str | None = None,
    value: str | None = None,
    action: str | None = None,
    resource: tuple[str, str] = ("ComputerSystem", ""),
    powered_off: bool = False,
    chassis_id: str = "1",
) -> RedfishError:
    """Map a state-machine error once, in the words of the request that caused it.

    `parameter`/`value`/`action` name what the client sent (`ResetType`, `Pause`,
    `#ComputerSystem.Reset`, or a property path for a PATCH when `action` is None).
    """
    if isinstance(exc, Busy):
        return RedfishError(
            503, "ServiceTemporarilyUnavailable", math.ceil(exc.retry_after),
            resolution=exc.message, headers=retry_after(exc.retry_after),
        )
    if isinstance(exc, BackendUnavailable):
        return RedfishError(503, "ServiceTemporarilyUnavailable", 5, resolution=exc.message,
                            headers=retry_after(5))
    if isinstance(exc, Refused):
        if powered_off:
            return RedfishError(409, "ChassisPowerStateOnRequired", chassis_id, resolution=exc.message)
        return RedfishError(409, "ActionParameterValueConflict", parameter or "", value or "",
                            resolution=exc.message)
    if isinstance(exc, NotSupported | Invalid):
        if action is not None:
            if isinstance(exc, NotSupported):
                return RedfishError(400, "ActionParameterNotSupported", parameter or "", action,
                                    resolution=exc.message)
            return RedfishError(400, "ActionParameterValueNotInList", value or "", parameter or "", action,
                                resolution=exc.message)
        return RedfishError(400, "PropertyValueNotInList", value or "", parameter or "",
                            resolution=exc.message)
    if isinstance(exc, NotFound):
        return RedfishError(404, "ResourceNotFound", resource[0], resource[1], resolution=exc.message)
    if isinstance(exc, Forbidden):
        return RedfishError(403, "InsufficientPrivilege", resolution=exc.message)
    return RedfishError(500, "InternalError")
