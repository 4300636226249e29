"""The Ironic venv: OpenStack Ironic installed from tests/ironic/requirements.txt into a venv of its own
(`.venv-ironic` at the repository's root, or $IRONIC_VENV), never into the product's.

`.ci/run` builds it before the tests (`python tests/ironic/ironic_venv.py`); the test's fixture builds it
too when it is missing or was built from another requirements file, so the README's test command alone
runs the Ironic test. A stamp file holding the requirements' sha256, written last, says the venv is
complete; a file lock keeps two runs from building it at once. Building is bounded in time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path(__file__).with_name("requirements.txt")
BUILD_TIMEOUT = 420.0  # seconds for venv + pip install, on a loaded 2-core machine (about 35 s when quiet)
STAMP = "vmbmc-ironic-requirements.sha256"


def venv_dir() -> Path:
    return Path(os.environ.get("IRONIC_VENV") or ROOT / ".venv-ironic")


def _digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def is_ready(venv: Path) -> bool:
    stamp = venv / STAMP
    return stamp.exists() and stamp.read_text().strip() == _digest() and (venv / "bin" / "ironic").exists()


@contextlib.contextmanager
def _locked(venv: Path) -> Iterator[None]:
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:  # beside it: rmtree leaves it alone
        deadline = time.monotonic() + BUILD_TIMEOUT
        while True:  # another run may be building it: wait for it, bounded
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another run has been building {venv} for {BUILD_TIMEOUT:g} s"
                    ) from None
                time.sleep(1)
        yield


def _run(argv: list[str], deadline: float) -> None:
    left = deadline - time.monotonic()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=max(left, 1))
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{' '.join(argv[:4])} …: not done within {BUILD_TIMEOUT:g} s") from None
    if out.returncode != 0:
        output = out.stdout[-3000:] + out.stderr[-3000:]
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}):\n{output}")


def ensure_venv() -> Path:
    """The Ironic venv, built now if it is missing or stale; → its directory."""
    venv = venv_dir()
    if is_ready(venv):
        return venv
    with _locked(venv):
        if is_ready(venv):  # built by the run we waited for
            return venv
        deadline = time.monotonic() + BUILD_TIMEOUT
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], deadline)
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        # --no-deps: the file pins the whole closure; --no-compile: Ironic compiles what it imports, and
        # byte-compiling all 320 MB up front would double the install time.
        _run([*pip, "install", "-q", "--no-deps", "--no-compile", "-r", str(REQUIREMENTS)], deadline)
        _run([*pip, "check"], deadline)  # the pins are a whole closure
        (venv / STAMP).write_text(_digest() + "\n")
    return venv


if __name__ == "__main__":
    started = time.monotonic()
    print(f"{ensure_venv()} ready ({time.monotonic() - started:.0f} s)")
