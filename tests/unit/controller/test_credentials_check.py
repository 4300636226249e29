"""The `Credentials` condition at each boundary of IPMI's password fields (16 and 20 bytes)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from vmbmc.controller.credentials import check_secret


def secret(password: str, username: str = "admin") -> dict[str, Any]:
    data = {
        k: base64.b64encode(v.encode()).decode() for k, v in (("username", username), ("password", password))
    }
    return {"metadata": {"resourceVersion": "7"}, "data": data}


@pytest.mark.parametrize(
    ("password", "status", "reason"),
    [
        ("p" * 16, "True", "CredentialsUsable"),
        ("p" * 17, "False", "PasswordTooLongForIPMI15"),
        ("p" * 20, "False", "PasswordTooLongForIPMI15"),
        ("p" * 21, "False", "PasswordTooLongForIPMI"),
        ("é" * 9, "False", "PasswordTooLongForIPMI15"),  # 18 bytes in UTF-8: IPMI counts bytes
    ],
)
def test_password_length_boundaries(password: str, status: str, reason: str) -> None:
    check = check_secret("ns", "creds", secret(password))
    assert (check.condition["status"], check.condition["reason"]) == (status, reason)
    assert not check.missing
    if status == "True":
        assert check.warning is None
    else:
        key, event_reason, message = check.warning or ("", "", "")
        assert event_reason == reason and key.endswith(".7") and "Secret ns/creds" in message
        assert "ipmitool -I lan" in message


def test_missing_or_incomplete_secret() -> None:
    check = check_secret("ns", "creds", None)
    assert check.missing and check.condition["reason"] == "SecretNotFound"
    assert "Secret ns/creds does not exist" in check.condition["message"]
    assert check.warning is not None and check.warning[1] == "SecretNotFound"
    check = check_secret("ns", "creds", secret("pw", username=""))
    assert check.missing and check.condition["reason"] == "SecretIncomplete"
    check = check_secret("ns", "creds", {"data": {"username": "YWRtaW4=", "password": "not base64!"}})
    assert check.missing and check.condition["reason"] == "SecretIncomplete"
