"""What a kbmc process loads: its import graph excludes the heavy libraries it does not use
(docs/kbmc.md, "Memory"). Checked in a fresh interpreter, as `vmbmc kbmc` starts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Never in a kbmc: Kubernetes clients other than lightkube, the operator framework, pyghmi (a test
# client), aiohttp (lightkube's httpx2 is the HTTP client; the health port is served by uvicorn, which
# Redfish ships anyway).
FORBIDDEN = (
    "kubernetes",
    "kubernetes_asyncio",
    "kopf",
    "pyghmi",
    "aiohttp",
    "wsproto",  # WebSocket frames: loaded only once a SOL session opens the VMI console
    "websockets",
)
# starlette only with Redfish; uvicorn with Redfish or the health port (`--health-port -1` turns it off).
REDFISH_ONLY = ("starlette",)
HTTP_SERVER = ("uvicorn",)

# What `vmbmc kbmc` imports: the CLI (vmbmc.cli imports only the chosen sub-command's module), then
# what `serve()` imports once it runs: IPMI only (with and without the health port) or with Redfish.
IPMI = (
    "from vmbmc.cli import build_parser; build_parser(['kbmc'])",
    "import vmbmc.kubevirt.hub, vmbmc.kbmc.server, vmbmc.metrics",
)
IPMI_HEALTH = (*IPMI, "import vmbmc.health")
REDFISH = (*IPMI_HEALTH, "import vmbmc.redfish.app, vmbmc.redfish.server")


def loaded(statements: tuple[str, ...], *, top: bool = True) -> set[str]:
    code = "; ".join((*statements, "import sys, json", "print(json.dumps(sorted(sys.modules)))"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return {name.split(".")[0] if top else name for name in json.loads(out.stdout)}


@pytest.mark.parametrize(
    ("statements", "forbidden"),
    [
        (IPMI, FORBIDDEN + REDFISH_ONLY + HTTP_SERVER),
        (IPMI_HEALTH, FORBIDDEN + REDFISH_ONLY),
        (REDFISH, FORBIDDEN),
    ],
)
def test_kbmc_import_graph(statements: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    modules = loaded(statements)
    assert "vmbmc" in modules and "asyncio" in modules  # the check ran what a kbmc runs
    assert sorted(modules & set(forbidden)) == []


def test_redfish_loads_its_stack_only_when_enabled() -> None:
    assert {"starlette", "uvicorn"} <= loaded(REDFISH)
    assert not any(m.startswith("vmbmc.redfish") for m in loaded(IPMI_HEALTH, top=False))


# Which modules the front ends may import (vmbmc.machine's interfaces, never a back end):
# tests/unit/test_layers.py.
