"""What every endpoint and middleware of one Redfish service shares (kept in `app.state.service`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from vmbmc import __version__
from vmbmc.auth import Credentials, LoginLimiter
from vmbmc.machine.api import Machine
from vmbmc.machine.types import Protocol, Requester
from vmbmc.redfish.sessions import SessionStore


@dataclass(frozen=True)
class ManagerInfo:
    """What the Manager resource reports about the BMC itself."""

    version: str
    ipmi_port: int | None = None  # None: no IPMI front end for this BMC
    redfish_port: int | None = None  # None: the port the request came in on
    https: bool = True

    @classmethod
    def from_dict(cls, info: dict[str, Any] | None) -> ManagerInfo:
        info = info or {}
        return cls(
            version=str(info.get("version") or __version__),
            ipmi_port=info.get("ipmi_port"),
            redfish_port=info.get("redfish_port"),
            https=bool(info.get("https", True)),
        )


@dataclass
class Service:
    machine: Machine
    credentials: Credentials
    limiter: LoginLimiter
    sessions: SessionStore
    manager: ManagerInfo
    settle_timeout: float = 30.0
    max_body: int = 64 * 1024

    def derived_uuid(self, role: str) -> str:
        """A stable UUID for the BMC's own resources, derived from the System's UUID."""
        base = self.machine.inventory().uuid
        try:
            namespace = uuid.UUID(base)
        except ValueError:
            namespace = uuid.uuid5(uuid.NAMESPACE_URL, base)
        return str(uuid.uuid5(namespace, role))


def service(conn: HTTPConnection) -> Service:
    return conn.app.state.service


def client_address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


def requester(conn: HTTPConnection) -> Requester:
    return Requester(
        protocol=Protocol.REDFISH,
        user=conn.scope.get("state", {}).get("user", ""),
        client=client_address(conn),
        request_id=conn.scope.get("state", {}).get("request_id") or uuid.uuid4().hex,
    )
