"""Fixtures for the Redfish unit tests: an in-process app (httpx ASGI transport) on a FakeMachine."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from machine_double import FakeMachine

from vmbmc.auth import LoginLimiter, StaticCredentials
from vmbmc.redfish import create_app

USER, PASSWORD = "admin", "password-for-tests"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


@pytest.fixture
async def machine() -> FakeMachine:
    return FakeMachine()


@pytest.fixture
def limiter() -> LoginLimiter:
    return LoginLimiter()


@pytest.fixture
def app(machine: FakeMachine, limiter: LoginLimiter):
    return create_app(
        machine,
        StaticCredentials(USER, PASSWORD),
        limiter=limiter,
        manager_info={"ipmi_port": 10623, "redfish_port": 8443, "https": True, "version": "9.9.9"},
        settle_timeout=0.5,
    )


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://bmc", headers=BASIC) as c:
        yield c


@pytest.fixture
async def anon(app):
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40001))
    async with httpx.AsyncClient(transport=transport, base_url="http://bmc") as c:
        yield c
