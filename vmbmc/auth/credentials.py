"""BMC credentials: one user and password per BMC, never logged.

In a pod they come from the credentials Secret mounted as files `username` and `password`
(never an env literal, never logged); they are re-read when the files change, so a rotated Secret
takes effect without a restart.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Protocol


class Credentials(Protocol):
    def username(self) -> str: ...

    def password_for(self, user: str) -> str | None:
        """The password of `user` (RAKP and MD5 need it in clear), None for an unknown user."""
        ...

    def check(self, user: str, password: str) -> bool: ...


def _constant_time_check(creds: Credentials, user: str, password: str) -> bool:
    expected = creds.password_for(user)
    # Compare even for an unknown user so timing does not tell which users exist.
    ok = hmac.compare_digest((expected or "\0").encode(), password.encode())
    return expected is not None and ok


class StaticCredentials:
    """Fixed credentials (tests, the demo's standalone BMCs)."""

    def __init__(self, username: str, password: str) -> None:
        if not username or not password:
            raise ValueError("username and password must not be empty (anonymous/null users are refused)")
        self._username = username
        self._password = password

    def username(self) -> str:
        return self._username

    def password_for(self, user: str) -> str | None:
        return self._password if user == self._username else None

    def check(self, user: str, password: str) -> bool:
        return _constant_time_check(self, user, password)

    def __repr__(self) -> str:  # never show the password
        return f"StaticCredentials(username={self._username!r})"


class FileCredentials:
    """Credentials read from `<dir>/username` and `<dir>/password`, re-read when they change."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._dir = Path(directory)
        self._stamp: tuple[float, float] | None = None
        self._username = ""
        self._password = ""
        self._load()

    def _files(self) -> tuple[Path, Path]:
        return self._dir / "username", self._dir / "password"

    def _load(self) -> None:
        user_file, pw_file = self._files()
        try:
            stamp = (user_file.stat().st_mtime, pw_file.stat().st_mtime)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"credentials directory {self._dir} must hold files 'username' and 'password'"
            ) from exc
        if stamp == self._stamp:
            return
        username = user_file.read_text().strip()
        # A password may end in spaces; only the trailing newline of a file is not part of it.
        password = pw_file.read_text().rstrip("\r\n")
        if not username or not password:
            raise ValueError(f"empty username or password in {self._dir}")
        self._username, self._password, self._stamp = username, password, stamp

    def username(self) -> str:
        self._load()
        return self._username

    def password_for(self, user: str) -> str | None:
        self._load()
        return self._password if user == self._username else None

    def check(self, user: str, password: str) -> bool:
        return _constant_time_check(self, user, password)

    def __repr__(self) -> str:
        return f"FileCredentials(directory={str(self._dir)!r})"
