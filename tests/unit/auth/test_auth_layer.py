"""vmbmc.auth and vmbmc.metrics sit below both front ends: they import neither front end nor any back end
(docs/architecture.md), so the IPMI and Redfish front ends share them without importing each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3] / "vmbmc"
HIGHER = ("vmbmc.kbmc", "vmbmc.redfish", "vmbmc.kubevirt", "vmbmc.controller", "vmbmc.emulator", "vmbmc.demo")


def imported(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_auth_and_metrics_import_no_front_end_or_back_end() -> None:
    files = [*sorted((ROOT / "auth").rglob("*.py")), ROOT / "metrics.py"]
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in imported(path)
        if name.startswith(HIGHER)
    ]
    assert files[0].exists() and offenders == []
