"""An in-process emulator behind starlette's TestClient, with RBAC on, an admin token ("admin"),
namespace `ns` and ServiceAccounts in it; `.emu` is the Emulator, `.sa` the headers of `ns/sa`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.testclient import TestClient

from vmbmc_devcluster.emulator.authn import ADMIN
from vmbmc_devcluster.emulator.emulator import Emulator
from vmbmc_devcluster.emulator.server import create_app


@contextmanager
def emulator_client(
    service_accounts: tuple[str, ...] = ("sa",), **client_options: Any
) -> Iterator[TestClient]:
    asyncio.set_event_loop(asyncio.new_event_loop())  # earlier tests may have closed the loop
    emu = Emulator(authorization="RBAC")
    emu.security.authn.add_static_token("admin", ADMIN)
    emu.store.create(emu.registry.get("", "v1", "namespaces"), {"metadata": {"name": "ns"}})
    for name in service_accounts:
        emu.store.create(emu.registry.get("", "v1", "serviceaccounts"), {"metadata": {"name": name}}, "ns")
    with TestClient(create_app(emu), base_url="http://emulator", **client_options) as c:
        c.emu = emu  # type: ignore[attr-defined]
        token = emu.security.authn.issue_service_account_token("ns", "sa")[0]
        c.sa = {"Authorization": f"Bearer {token}"}  # type: ignore[attr-defined]
        yield c
