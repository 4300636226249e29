"""One error hierarchy for the state machine; each front end maps it once.

| error               | IPMI completion code     | Redfish                                  |
|---------------------|--------------------------|------------------------------------------|
| Busy                | 0xC0 node busy           | 503 + Retry-After (after waiting ≤ 30 s) |
| Refused             | 0xD5 not in present state| 409 Base registry message                |
| NotSupported        | 0xCC invalid data field  | 400 ActionParameterNotSupported          |
| Invalid             | 0xCC invalid data field  | 400 PropertyValueNotInList / ...         |
| NotFound            | 0xD5 (VM gone)           | 404 ResourceNotFound                     |
| Forbidden           | 0xD4 insufficient priv.  | 403 InsufficientPrivilege                |
| BackendUnavailable  | 0xFF unspecified / 0xC3  | 503 + Retry-After                        |
| Unanswered          | 0xFF unspecified         | 503 + Retry-After                        |
"""

from __future__ import annotations


class MachineError(Exception):
    """Base of every error the state machine raises. `message` is safe to show to a client."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Busy(MachineError):
    """A transition in progress opposes the request; the client should retry."""

    retryable = True

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(MachineError):
    """The request is not possible in the present state (e.g. `pause` when Off)."""


class NotSupported(MachineError):
    """The request has no mapping onto KubeVirt (e.g. NMI) or the VM cannot honour it."""


class Invalid(MachineError):
    """A malformed or out-of-range request."""


class NotFound(MachineError):
    """The VM (or its BMC) does not exist."""


class Forbidden(MachineError):
    """The API server refused our identity (RBAC)."""


class BackendUnavailable(MachineError):
    """The API server cannot be reached or answered with a server error."""

    retryable = True


class Unanswered(BackendUnavailable):
    """A KubeVirt call got no answer within the bound: it may still be carried out (effect `unknown`)."""
