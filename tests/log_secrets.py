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


def kubeconfig_tokens_under(root: str | Path) -> list[str]:
    """The tokens of every file named `kubeconfig` below `root` (the pod runner writes one per pod, with
    its ServiceAccount's token)."""
    return [t for path in sorted(Path(root).rglob("kubeconfig")) for t in kubeconfig_tokens(path)]


def file_leaks(paths: Iterable[str | Path], secrets: Iterable[str], user: str = "") -> dict[str, list[str]]:
    """{file: the secrets found in it} for each file that holds any (see `leaks`)."""
    given = list(secrets)
    found = {str(p): leaks(Path(p).read_text(errors="replace"), given, user) for p in paths}
    return {p: s for p, s in found.items() if s}


def outside_guide(output: str) -> str:
    """`vmbmc demo`'s output without the guide it prints for its user (from "vmbmc demo is ready." to
    "Press Ctrl-C to stop."), which shows each BMC's password by design; everything else is log."""
    kept, in_guide = [], False
    for line in output.splitlines():
        if line.strip() == "vmbmc demo is ready.":
            in_guide = True
        if not in_guide:
            kept.append(line)
        if line.strip().startswith("Press Ctrl-C to stop."):
            in_guide = False
    return "\n".join(kept)
