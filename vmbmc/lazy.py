"""Names a package exports, loaded on first use (PEP 562): importing one module of the package then runs an
`__init__` that loads nothing else. A package lists its names under `if TYPE_CHECKING:` for type checkers
and sets `__getattr__ = lazy.exports(__name__, {name: module})`."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `homes[name]` and returns its `name`."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
