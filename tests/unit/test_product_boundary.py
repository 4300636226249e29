"""The product never imports the development distribution (vmbmc_devcluster: the emulator, the pod
runner, the demo): not by an import statement, not by a module name in a string. `vmbmc demo` and
`vmbmc emulator` reach the product's CLI only through the `vmbmc.commands` entry points."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from vmbmc import cli

PRODUCT = ROOT / "vmbmc"


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_product_module_names_the_development_distribution() -> None:
    sources = sorted(PRODUCT.rglob("*.py"))
    assert len(sources) > 50  # the whole product was read
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if "vmbmc_devcluster" in path.read_text()
        or any(name.split(".")[0] == "vmbmc_devcluster" for name in _imports(path))
    ]
    assert offenders == []


def test_the_product_cli_loads_no_development_module_for_its_own_commands() -> None:
    """`vmbmc kbmc` and `vmbmc controller` parse their flags without importing the emulator or the demo:
    listing the development distribution's commands loads only its tiny `commands` module."""
    code = (
        "import sys; from vmbmc.cli import build_parser; build_parser(['kbmc']); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('vmbmc_devcluster'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert set(out.stdout.split()) == {"vmbmc_devcluster", "vmbmc_devcluster.commands"}, out.stdout


@pytest.mark.parametrize("argv", [["demo", "--vms", "200", "--kbmc-mode", "shared"], ["emulator", "--bogus"]])
def test_without_the_development_distribution_its_commands_name_the_pip_command(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As from the product wheel alone (tests/integration/test_wheel.py runs that for real): one line
    naming what to install, exit code 2, whatever flags follow."""
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    assert cli.main(argv) == 2
    out = capsys.readouterr()
    assert out.out == ""
    (line,) = out.err.splitlines()
    assert line.startswith(f"vmbmc {argv[0]}: not installed: ") and "pip install -e ./devcluster" in line


def test_a_plugin_never_replaces_a_product_command(monkeypatch: pytest.MonkeyPatch) -> None:
    class Impostor:
        name = "kbmc"

        def load(self) -> tuple[str, str]:
            return ("somewhere.else", "not the kbmc")

    monkeypatch.setattr(cli, "entry_points", lambda group: [Impostor()])
    assert cli.commands()["kbmc"][0] == "vmbmc.kbmc.cli"
