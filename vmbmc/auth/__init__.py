"""Credentials and failed-login limits shared by the IPMI and Redfish front ends.

The names below are loaded on first use: the controller's `vmbmc.auth.passwords` loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmbmc.auth.credentials import Credentials, FileCredentials, StaticCredentials
    from vmbmc.auth.lockout import LoginLimiter

__all__ = ["Credentials", "FileCredentials", "LoginLimiter", "StaticCredentials"]

_HOME = {
    "Credentials": "vmbmc.auth.credentials",
    "FileCredentials": "vmbmc.auth.credentials",
    "StaticCredentials": "vmbmc.auth.credentials",
    "LoginLimiter": "vmbmc.auth.lockout",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
