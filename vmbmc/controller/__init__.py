"""The VirtualMachineBMC controller (kopf): auto-created BMCs, each BMC's kbmc and its status.

The names below are loaded lazily, so importing a submodule (`transitions`, `naming`) does not load kopf.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Controller", "ControllerOptions", "ControllerThread", "run_controller"]


def __getattr__(name: str) -> Any:
    if name == "ControllerOptions":
        from vmbmc.controller.options import ControllerOptions

        return ControllerOptions
    if name in ("Controller", "ControllerThread", "run_controller"):
        from vmbmc.controller import operator

        return getattr(operator, name)
    raise AttributeError(name)
