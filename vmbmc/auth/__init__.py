"""Credentials and failed-login limits shared by the IPMI and Redfish front ends."""

from vmbmc.auth.credentials import Credentials, FileCredentials, StaticCredentials
from vmbmc.auth.lockout import LoginLimiter

__all__ = ["Credentials", "FileCredentials", "LoginLimiter", "StaticCredentials"]
