"""The VirtualMachineBMC controller (kopf): auto-created BMCs, each BMC's kbmc and its status."""

from __future__ import annotations

from vmbmc.controller.operator import Controller, ControllerThread, run_controller
from vmbmc.controller.options import ControllerOptions

__all__ = ["Controller", "ControllerOptions", "ControllerThread", "run_controller"]
