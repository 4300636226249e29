"""Credentials and failed-login limits shared by the IPMI and Redfish front ends.

The names below are loaded on first use: the controller's `vmbmc.auth.passwords` loads nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmbmc import lazy

if TYPE_CHECKING:
    from vmbmc.auth.credentials import Credentials, FileCredentials, StaticCredentials
    from vmbmc.auth.lockout import LoginLimiter

__all__ = ["Credentials", "FileCredentials", "LoginLimiter", "StaticCredentials"]

__getattr__ = lazy.exports(
    __name__,
    {
        "Credentials": "vmbmc.auth.credentials",
        "FileCredentials": "vmbmc.auth.credentials",
        "StaticCredentials": "vmbmc.auth.credentials",
        "LoginLimiter": "vmbmc.auth.lockout",
    },
)
