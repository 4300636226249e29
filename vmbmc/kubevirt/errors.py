"""One mapping of the Kubernetes API's answers onto the state machine's errors, for every back-end module."""

from __future__ import annotations

from vmbmc.k8s.client import ApiError
from vmbmc.machine.errors import BackendUnavailable, Busy, Forbidden, Invalid, MachineError, NotFound


def machine_error(err: ApiError, what: str) -> MachineError:
    """The state machine's error for an API answer about `what` (409 is handled by the caller)."""
    if err.code == 404:
        return NotFound(f"{what} not found")
    if err.code in (401, 403):
        return Forbidden(f"the API server refused this BMC's identity for {what}: {err.message}")
    if err.code in (400, 422):
        return Invalid(f"KubeVirt refused the request for {what}: {err.message}")
    if err.code == 409:
        return Busy(f"{what} is changing state: {err.message}")
    return BackendUnavailable(f"the Kubernetes API is unavailable ({err.message})")
