"""Fixtures for Redfish integration tests: a real uvicorn server (HTTP or HTTPS) on a FakeMachine."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "unit" / "redfish"))

from machine_double import FakeMachine

from vmbmc.auth import LoginLimiter, StaticCredentials
from vmbmc.redfish import RedfishServer, create_app, serve

USER, PASSWORD = "admin", "integration-password"


@pytest.fixture
async def machine() -> FakeMachine:
    return FakeMachine(transition_delay=0.3)


async def start(machine: FakeMachine, *, http: bool) -> RedfishServer:
    app = create_app(
        machine,
        StaticCredentials(USER, PASSWORD),
        limiter=LoginLimiter(),
        manager_info={"ipmi_port": 10623, "https": not http, "version": "test"},
        settle_timeout=5,
    )
    return await serve(app, "127.0.0.1", 0, http=http)


@pytest.fixture(params=["http", "https"])
async def server(request: pytest.FixtureRequest, machine: FakeMachine) -> AsyncIterator[RedfishServer]:
    srv = await start(machine, http=request.param == "http")
    yield srv
    await srv.stop()


@pytest.fixture
async def https_server(machine: FakeMachine) -> AsyncIterator[RedfishServer]:
    srv = await start(machine, http=False)
    yield srv
    await srv.stop()
