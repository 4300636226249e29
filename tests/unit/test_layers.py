"""The product package reads as its data flows (docs/architecture.md, "Layers"): every import between
product modules goes down a layer or stays within one, no modules import each other in a cycle, no
package's `__init__` loads another package, and no product module is over 600 lines.

Imports are read with `ast` from the source, so an import inside a function or under TYPE_CHECKING
counts as much as one at the top: a dependency hidden from the import-time graph is still a dependency.
The emulator and the demo are not the product: they may import it, it never imports them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "vmbmc"
NOT_PRODUCT = ("vmbmc_devcluster",)  # the development distribution: tests and the demo only
MAX_LINES = 600

# Each product module's layer: the layer of its longest listed prefix.
LAYER_OF = {
    "vmbmc": "base",  # the package itself: its version only
    "vmbmc.naming": "base",  # names, labels, CRD identity: shared by the controller and the back end
    "vmbmc.roster": "base",  # the shared kbmc's roster format: the controller writes it, the kbmc reads it
    "vmbmc.selectors": "base",
    "vmbmc.destinations": "base",  # the event destinations allow-list: the controller's and the kbmc's
    "vmbmc.usage": "base",
    "vmbmc.ratelog": "base",
    "vmbmc.health": "base",
    "vmbmc.metrics": "base",  # the counters both front ends and the login hold share
    "vmbmc.lazy": "base",  # names a package loads on first use
    "vmbmc.kustomize": "base",
    "vmbmc.manifests": "base",
    "vmbmc.k8s": "k8s",  # the generic Kubernetes client
    "vmbmc.machine": "machine",  # the state machine's vocabulary and pure decisions
    "vmbmc.auth": "auth",
    "vmbmc.kubevirt": "backend",
    "vmbmc.kbmc": "ipmi",  # the IPMI front end
    "vmbmc.redfish": "redfish",  # the Redfish front end
    "vmbmc.kbmc.service": "bmc",  # one BMC: the IPMI and Redfish front ends over one Machine
    "vmbmc.kbmc.shared": "bmc",  # one process serving many BMCs (shared mode)
    "vmbmc.kbmc.cli": "kbmc-cli",  # the one place where the front ends and the back end are wired
    "vmbmc.controller": "controller",
    "vmbmc.cli": "cli",  # `vmbmc`: chooses a sub-command's cli module by name (importlib)
    "vmbmc.__main__": "cli",
}
_FRONT = {"base", "machine", "auth"}
MAY_IMPORT = {
    "base": {"base"},
    "k8s": {"base", "k8s"},
    "machine": {"base", "machine"},
    "auth": {"base", "auth"},
    "backend": {"base", "k8s", "machine", "backend"},
    "ipmi": _FRONT | {"ipmi"},
    "redfish": _FRONT | {"redfish"},
    "bmc": _FRONT | {"ipmi", "redfish", "bmc"},
    "kbmc-cli": _FRONT | {"ipmi", "redfish", "bmc", "backend", "k8s", "kbmc-cli"},
    "controller": {"base", "k8s", "machine", "auth", "controller"},
    "cli": {"base", "cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PRODUCT = {m: p for m, p in MODULES.items() if not m.startswith(NOT_PRODUCT)}


def imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported vmbmc module, line) for every import statement in `module`, wherever it stands."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the containing package upwards
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            # `from pkg import mod` imports the module; `from mod import name` the module itself
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            if name == "vmbmc" or name.startswith("vmbmc."):
                while name not in MODULES:  # `import vmbmc.a.b` where b is a name, not a module
                    name = name.rpartition(".")[0]
                yield name, node.lineno


def layer(module: str) -> str:
    prefix = module
    while prefix not in LAYER_OF:
        assert "." in prefix, f"{module} is in no layer: add it to LAYER_OF"
        prefix = prefix.rpartition(".")[0]
    return LAYER_OF[prefix]


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in imports(m) if t != m} for m in PRODUCT}


def test_every_module_is_parsed() -> None:
    assert {"vmbmc.k8s.client", "vmbmc.kubevirt.machine", "vmbmc.kbmc.cli", "vmbmc.naming"} <= set(PRODUCT)
    # the reader sees function-level imports: this one is inside `serve`
    assert "vmbmc.kubevirt.hub" in {t for t, _ in imports("vmbmc.kbmc.cli")}


def test_no_lower_layer_imports_a_higher_one() -> None:
    offenders = []
    for module in PRODUCT:
        for target, line in imports(module):
            if target.startswith(NOT_PRODUCT):
                offenders.append(f"{module}:{line} imports {target} (not part of the product)")
            elif layer(target) not in MAY_IMPORT[layer(module)]:
                offenders.append(f"{module}:{line} ({layer(module)}) imports {target} ({layer(target)})")
    assert offenders == []


def test_no_import_cycles() -> None:
    edges = graph()
    cycles = [sorted(c) for c in strongly_connected(edges) if len(c) > 1]
    assert cycles == []


def test_package_inits_load_nothing_of_other_packages() -> None:
    """Importing one module of a package runs its `__init__`: that loads nothing beyond the package (but
    `vmbmc.lazy`, which makes its names load on first use)."""
    offenders = [
        f"{module} imports {target}"
        for module, path in PRODUCT.items()
        if path.name == "__init__.py" and module != "vmbmc"
        for target, _ in imports(module)
        if not target.startswith(module + ".") and target != "vmbmc.lazy"
    ]
    assert offenders == []


def test_no_product_module_over_600_lines() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in PRODUCT.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            nxt = next((t for t in targets if t in edges), None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
    return found


def test_cycle_finder_finds_cycles() -> None:
    """The check above can fail: a two-module and a three-module cycle, beside an acyclic chain."""
    edges = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(sorted(c) for c in strongly_connected(edges) if len(c) > 1) == [["a", "b"], ["c", "d", "e"]]


def loaded_by(statement: str) -> set[str]:
    """The vmbmc modules a fresh interpreter loads for `statement`, from `python -X importtime`."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT,
    )
    lines = [line for line in out.stderr.splitlines() if line.startswith("import time:")]
    names = {line.rpartition("|")[2].strip() for line in lines}
    return {n for n in names if n == "vmbmc" or n.startswith("vmbmc.")}


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import vmbmc.k8s.client", ("vmbmc.kubevirt", "vmbmc.controller", "vmbmc.machine")),
        ("import vmbmc.machine.observe", ("vmbmc.k8s", "vmbmc.kubevirt", "vmbmc.controller", "vmbmc.kbmc")),
        ("import vmbmc.naming", ("vmbmc.k8s", "vmbmc.kubevirt", "vmbmc.controller", "vmbmc.machine")),
        ("import vmbmc.kubevirt.hub", ("vmbmc.controller", "vmbmc.kbmc", "vmbmc.redfish")),
    ],
)
def test_a_lower_layer_loads_nothing_above_it(statement: str, forbidden: tuple[str, ...]) -> None:
    modules = loaded_by(statement)
    assert statement.split()[1] in modules  # importtime reported what it loaded
    assert sorted(m for m in modules if m.startswith(forbidden)) == []


def test_inits_stay_lazy_at_run_time() -> None:
    """What the AST check cannot see: a module of the Redfish package loads neither starlette nor the app."""
    code = "import sys, json, vmbmc.redfish.tls; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    modules = set(json.loads(out.stdout))
    assert "vmbmc.redfish.tls" in modules
    assert sorted(m for m in modules if m.startswith(("starlette", "uvicorn", "vmbmc.redfish.app"))) == []
