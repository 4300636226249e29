"""Shared helpers of the Redfish integration tests (a uniquely named module: `conftest` is not
importable reliably when several test directories have one)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "redfish"))

from machine_double import FakeMachine

from vmbmc.auth import LoginLimiter, StaticCredentials
from vmbmc.destinations import AllowList
from vmbmc.redfish import RedfishServer, create_app, serve

USER, PASSWORD = "admin", "integration-password"


async def start(machine: FakeMachine, *, http: bool) -> RedfishServer:
    app = create_app(
        machine,
        StaticCredentials(USER, PASSWORD),
        limiter=LoginLimiter(),
        manager_info={"ipmi_port": 10623, "https": not http, "version": "test"},
        settle_timeout=5,
        event_destinations=AllowList.parse("127.0.0.0/8"),  # as the demo: loopback only, not ::1
    )
    return await serve(app, "127.0.0.1", 0, http=http)
