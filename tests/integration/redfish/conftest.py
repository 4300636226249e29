"""Fixtures for Redfish integration tests: a real uvicorn server (HTTP or HTTPS) on a FakeMachine."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from redfish_servers import FakeMachine, start

from vmbmc.redfish import RedfishServer


@pytest.fixture
async def machine() -> FakeMachine:
    return FakeMachine(transition_delay=0.3)


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
