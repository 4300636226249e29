"""What a kbmc process loads: its import graph excludes the heavy libraries it does not use
(docs/kbmc.md, "Memory"). Checked in a fresh interpreter, as `vmbmc kbmc` starts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Never in a kbmc: Kubernetes clients other than lightkube, the operator framework, pyghmi (a test
# client), aiohttp (lightkube's httpx2 is the HTTP client), cryptography (AES comes from the loaded
# libcrypto; the self-signed certificate is made by a child process), prometheus_client (our own counters).
FORBIDDEN = (
    "kubernetes",
    "kubernetes_asyncio",
    "kopf",
    "pyghmi",
    "aiohttp",
    "cryptography",
    "prometheus_client",
    "wsproto",  # WebSocket frames: loaded only once a SOL session opens the VMI console
    "websockets",
)
# Only when Redfish is enabled.
REDFISH_ONLY = ("starlette", "uvicorn")

# What `vmbmc kbmc` imports: the CLI (vmbmc.cli imports only the chosen sub-command's module), then
# what `serve()` imports once it runs, IPMI only or with Redfish.
IPMI = (
    "from vmbmc.cli import build_parser; build_parser(['kbmc'])",
    "import vmbmc.kubevirt.hub, vmbmc.health, vmbmc.kbmc.metrics",
)
REDFISH = (*IPMI, "import vmbmc.redfish.app, vmbmc.redfish.server")


def loaded(statements: tuple[str, ...]) -> set[str]:
    code = "; ".join((*statements, "import sys, json", "print(json.dumps(sorted(sys.modules)))"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout)}


@pytest.mark.parametrize(
    ("statements", "forbidden"), [(IPMI, FORBIDDEN + REDFISH_ONLY), (REDFISH, FORBIDDEN)]
)
def test_kbmc_import_graph(statements: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    modules = loaded(statements)
    assert "vmbmc" in modules and "asyncio" in modules  # the check ran what a kbmc runs
    assert sorted(modules & set(forbidden)) == []


def test_redfish_loads_its_stack_only_when_enabled() -> None:
    assert {"starlette", "uvicorn"} <= loaded(REDFISH)


def test_front_ends_reach_kubernetes_only_through_the_machine_interface() -> None:
    """The IPMI and Redfish front ends import no back end (vmbmc.kubevirt, the emulator, the controller),
    not even for types: they see vmbmc.machine's interfaces. Only the kbmc's command line wires one in."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "vmbmc"
    back_ends = ("vmbmc.kubevirt", "vmbmc.emulator", "vmbmc.controller")
    offenders = []
    for path in sorted([*(root / "kbmc").rglob("*.py"), *(root / "redfish").rglob("*.py")]):
        if path == root / "kbmc" / "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(root)}: {m}" for m in names if m.startswith(back_ends)]
    assert offenders == []
