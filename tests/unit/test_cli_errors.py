"""Every mistake in starting a `vmbmc` command: exit code 2, a message naming the fix, no traceback.

Run as a user would (a subprocess of the installed `vmbmc`). argparse's own errors (an unknown flag, a
malformed value) print the sub-command's usage and then one line; every other mistake is one line alone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

VMBMC = str(Path(sys.executable).with_name("vmbmc"))


def vmbmc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VMBMC, *args], capture_output=True, text=True, timeout=60, env=env)


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    """The mistake's message: exit code 2, one line on stderr, nothing else."""
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def usage_then_line(out: subprocess.CompletedProcess[str], command: str) -> str:
    """argparse's mistakes: the sub-command's own usage, then one line of error."""
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith(f"usage: vmbmc {command} "), out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"vmbmc {command}: error: "), out.stderr
    return last


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "command", [["demo"], ["emulator", "--kubeconfig", "k"], ["kbmc", "--vm", "a/b"], ["controller"]]
)
def test_unknown_flag_prints_the_subcommands_usage(command: list[str]) -> None:
    line = usage_then_line(vmbmc(*command, "--bogus"), command[0])
    assert line.endswith(f"unrecognized arguments: --bogus (see 'vmbmc {command[0]} --help')")


@pytest.mark.parametrize("value", ["70000", "-5", "http"])
@pytest.mark.parametrize("command", [["demo"], ["emulator", "--kubeconfig", "k"]])
def test_invalid_port(command: list[str], value: str) -> None:
    line = usage_then_line(vmbmc(*command, f"--port={value}"), command[0])
    assert "is not a port number (0-65535; 0: any free port)" in line


@pytest.mark.parametrize("command", [["demo"], ["emulator", "--kubeconfig", "k"]])
def test_busy_port(command: list[str], busy_port: int, tmp_path: Path) -> None:
    line = one_line(vmbmc(*command, "--port", str(busy_port)))
    assert line == (
        f"vmbmc {command[0]}: --port {busy_port}: port {busy_port} on 127.0.0.1 is in use; "
        "choose another port, or --port 0 for any free one"
    )


def test_controller_without_kubeconfig(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")} | {
        "HOME": str(tmp_path)
    }
    line = one_line(vmbmc("controller", env=env))
    assert (
        line.startswith("vmbmc controller: no kubeconfig")
        and "give --kubeconfig PATH or set KUBECONFIG" in line
    )
    line = one_line(vmbmc("controller", "--kubeconfig", str(tmp_path / "nope")))
    assert "no such readable file" in line
    (tmp_path / "token").write_text("just-a-token\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "username").write_text("admin")
    (creds / "password").write_text("pw")
    for command in (["controller"], ["kbmc", "--vm", "a/b", "--credentials-dir", str(creds)]):
        line = one_line(vmbmc(*command, "--kubeconfig", str(tmp_path / "token")))
        assert line.endswith(
            "not a kubeconfig (it needs clusters and a current-context); give your cluster's kubeconfig"
        )


def test_unwritable_workdir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a directory cannot be made under a file, whoever runs the test (even root)
    line = one_line(vmbmc("demo", "--workdir", str(blocker / "work")))
    assert line.startswith(f"vmbmc demo: --workdir {blocker / 'work'}: cannot write there")
    assert line.endswith("choose a directory you can write")
    line = one_line(vmbmc("emulator", "--kubeconfig", str(blocker / "kubeconfig")))
    assert line.startswith(f"vmbmc emulator: --kubeconfig {blocker}: cannot write there")


def test_other_mistakes() -> None:
    assert one_line(vmbmc("demo", "--vms", "0")) == "vmbmc demo: --vms must be at least 1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMBMC_")}
    line = one_line(vmbmc("kbmc", "--vm", "a/b", env=env))
    assert "give --credentials-dir DIR, or set VMBMC_USERNAME and VMBMC_PASSWORD" in line
    line = one_line(vmbmc("controller", "--vm-namespace-selector", "a in (", "--kubeconfig", "x"))
    assert line.startswith("vmbmc controller: --vm-namespace-selector: ")
    line = usage_then_line(vmbmc("kbmc", "--vm", "nonamespace"), "kbmc")
    assert "expected NAMESPACE/NAME" in line
