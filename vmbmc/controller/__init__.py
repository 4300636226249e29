"""The VirtualMachineBMC controller (kopf): auto-created BMCs, each BMC's kbmc and its status.

The names below are loaded on first use, so importing a submodule (`transitions`) does not load kopf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmbmc import lazy

if TYPE_CHECKING:
    from vmbmc.controller.operator import Controller, ControllerThread, run_controller
    from vmbmc.controller.options import ControllerOptions

__all__ = ["Controller", "ControllerOptions", "ControllerThread", "run_controller"]

__getattr__ = lazy.exports(
    __name__,
    {
        "ControllerOptions": "vmbmc.controller.options",
        "Controller": "vmbmc.controller.operator",
        "ControllerThread": "vmbmc.controller.operator",
        "run_controller": "vmbmc.controller.operator",
    },
)
