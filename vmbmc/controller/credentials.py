"""What a BMC's credentials Secret lets its clients do: the `Credentials` condition and, when something
needs the user's attention, a Warning Event naming the Secret.

- no such Secret (a `spec.authSecretRef` naming a Secret not created yet): the kbmc pod cannot start;
- no `username` or `password` key: the same;
- a password of 17-20 bytes: IPMI 2.0 (`ipmitool -I lanplus`) and Redfish work, IPMI 1.5 (`-I lan`)
  cannot (its password field has 16 bytes);
- over 20 bytes: IPMI is refused altogether (the kbmc answers IPMI 1.5 and RAKP logins with errors);
  Redfish works.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from vmbmc.auth.passwords import IPMI15_MAX_PASSWORD, IPMI20_MAX_PASSWORD
from vmbmc.controller.conditions import condition

CONDITION = "Credentials"


@dataclass(frozen=True)
class CredentialsCheck:
    condition: dict[str, Any]
    #: (Event name suffix, reason, message) of the Warning Event to write, or None
    warning: tuple[str, str, str] | None = None

    @property
    def missing(self) -> bool:
        """The kbmc cannot start until the Secret is there (and usable)."""
        return self.condition["reason"] in ("SecretNotFound", "SecretIncomplete")


def _condition(ok: bool, reason: str, message: str) -> dict[str, Any]:
    return condition(CONDITION, ok, reason, message)


def _decoded_length(data: dict[str, Any], key: str) -> int | None:
    try:
        return len(base64.b64decode(str(data.get(key) or ""), validate=True))
    except (binascii.Error, ValueError):
        return None


def check_secret(namespace: str, name: str, secret: dict[str, Any] | None) -> CredentialsCheck:
    ref = f"{namespace}/{name}"
    if secret is None:
        message = (
            f"Secret {ref} does not exist: create it with keys username and password "
            "(kubectl create secret generic ... --from-literal=username=... --from-literal=password=...)"
        )
        return CredentialsCheck(
            _condition(False, "SecretNotFound", message), ("secretnotfound", "SecretNotFound", message)
        )
    data = secret.get("data") or {}
    user_len, pw_len = _decoded_length(data, "username"), _decoded_length(data, "password")
    version = (secret.get("metadata") or {}).get("resourceVersion") or "0"
    if not user_len or not pw_len:
        message = f"Secret {ref} needs non-empty keys username and password"
        return CredentialsCheck(
            _condition(False, "SecretIncomplete", message),
            (f"secretincomplete.{version}", "SecretIncomplete", message),
        )
    if pw_len > IPMI20_MAX_PASSWORD:
        message = (
            f"the password in Secret {ref} has {pw_len} bytes: IPMI takes at most {IPMI20_MAX_PASSWORD} "
            f"(IPMI 2.0) and {IPMI15_MAX_PASSWORD} (IPMI 1.5, ipmitool -I lan), so IPMI logins are refused; "
            f"Redfish works. Use a password of at most {IPMI15_MAX_PASSWORD} bytes for every client"
        )
        return CredentialsCheck(
            _condition(False, "PasswordTooLongForIPMI", message),
            (f"passwordtoolongforipmi.{version}", "PasswordTooLongForIPMI", message),
        )
    if pw_len > IPMI15_MAX_PASSWORD:
        message = (
            f"the password in Secret {ref} has {pw_len} bytes: IPMI 2.0 (ipmitool -I lanplus) and Redfish "
            f"work, IPMI 1.5 (ipmitool -I lan) cannot, since it takes at most {IPMI15_MAX_PASSWORD}. "
            f"Use a password of at most {IPMI15_MAX_PASSWORD} bytes for every client"
        )
        return CredentialsCheck(
            _condition(False, "PasswordTooLongForIPMI15", message),
            (f"passwordtoolongforipmi15.{version}", "PasswordTooLongForIPMI15", message),
        )
    return CredentialsCheck(
        _condition(True, "CredentialsUsable", f"Secret {ref}: usable over IPMI 1.5, IPMI 2.0 and Redfish")
    )
