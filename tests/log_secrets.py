"""Find secrets in logs: a password or token as given, base64-encoded (an Authorization header or
a kubeconfig field copied whole) or as `user:password`."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path

import yaml


def forms(secret: str, user: str = "") -> set[str]:
    raw = secret.encode()
    out = {secret, base64.b64encode(raw).decode().rstrip("=")}
    if user:
        out.add(base64.b64encode(f"{user}:{secret}".encode()).decode().rstrip("="))
    return {f for f in out if len(f) >= 6}  # shorter strings would match by chance


def leaks(text: str, secrets: Iterable[str], user: str = "") -> list[str]:
    """The secrets found in `text`, each shown by its first 3 characters only."""
    return [s[:3] + "…" for s in secrets if any(f in text for f in forms(s, user))]


def kubeconfig_tokens(path: str | Path) -> list[str]:
    config = yaml.safe_load(Path(path).read_text())
    return [u["user"]["token"] for u in config.get("users", []) if u.get("user", {}).get("token")]
