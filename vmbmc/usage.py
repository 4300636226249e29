"""Mistakes in how a `vmbmc` command was started: each is one line on stderr naming the fix, exit code 2.

Sub-commands raise `UsageError`; `vmbmc.cli.main` prints it. The checks here run before anything starts,
so the user learns what to change instead of reading a traceback from deep inside a library.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
from pathlib import Path

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class UsageError(Exception):
    """A mistake in the command line or the environment: exit code 2, one line, no traceback."""


def port(value: str) -> int:
    """argparse type: a TCP/UDP port, 0 meaning any free one."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a port number (0-65535; 0: any free port)"
        ) from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port number (0-65535; 0: any free port)")
    return number


def port_or_off(value: str) -> int:
    """argparse type: a port, or -1 for off."""
    return -1 if value.strip() == "-1" else port(value)


def check_port_free(flag: str, host: str, number: int, proto: int = socket.SOCK_STREAM) -> None:
    """Bind and release `host:number` so a busy or privileged port is reported before anything starts."""
    if number == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, proto) as sock:
        if proto == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind((host, number))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                why = "is in use"
            elif err.errno == errno.EACCES:
                why = "needs privileges (ports below 1024 do)"
            else:
                why = f"cannot be bound ({err.strerror})"
            raise UsageError(
                f"{flag} {number}: port {number} on {host} {why}; "
                f"choose another port, or {flag} 0 for any free one"
            ) from None


def check_kubeconfig(path: str | None) -> None:
    """The cluster credentials the process will use exist: --kubeconfig, KUBECONFIG, the in-cluster
    service account (KUBERNETES_SERVICE_HOST in a pod) or ~/.kube/config, in that order (vmbmc.k8s.config)."""
    if path:
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise UsageError(f"--kubeconfig {path}: no such readable file; give the path of a kubeconfig")
        _check_kubeconfig_file("--kubeconfig", path)
        return
    candidates = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if not candidates and os.environ.get("KUBERNETES_SERVICE_HOST"):
        if not IN_CLUSTER_TOKEN.is_file():
            raise UsageError(
                f"KUBERNETES_SERVICE_HOST is set but {IN_CLUSTER_TOKEN} is missing: give --kubeconfig PATH, "
                "or run in a pod whose service account token is mounted"
            )
        return
    if not candidates:
        candidates = [str(Path.home() / ".kube" / "config")]
    found = [p for p in candidates if os.path.isfile(p)]
    if not found:
        raise UsageError(
            f"no kubeconfig (looked at {', '.join(candidates)}) and not in a pod: give --kubeconfig PATH "
            "or set KUBECONFIG"
        )
    _check_kubeconfig_file("kubeconfig", found[0])


def _check_kubeconfig_file(what: str, path: str) -> None:
    """A file that is not a kubeconfig at all (a typo'd path, a token file) is named before a client
    library fails on it with a message about its own internals."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UsageError(f"{what} {path}: cannot be read as YAML ({err.__class__.__name__})") from None
    if not isinstance(doc, dict) or not doc.get("clusters") or not doc.get("current-context"):
        raise UsageError(
            f"{what} {path}: not a kubeconfig (it needs clusters and a current-context); "
            "give your cluster's kubeconfig"
        )


def writable_dir(flag: str, path: Path) -> Path:
    """`path`, created if needed, once a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".vmbmc-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(
            f"{flag} {path}: cannot write there ({err.strerror}); choose a directory you can write"
        ) from None
    return path
