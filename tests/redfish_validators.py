"""DMTF's validators (from the `[test]` extra) as the tests run them: a subprocess bounded in time, without
the CA-bundle variables `requests` would let override `--no-cert-check`, and their verdicts read from
their own output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.redfish_csdl import CSDL

INTEROP_PROFILE = Path(__file__).parent / "data" / "redfish-interop" / "OpenStackIronicProfile.v1_2_0.json"


def run_validator(name: str, *args: str, timeout: float = 300) -> str:
    """Run DMTF's `name` (rf_service_validator, rf_interop_validator, ...); its stdout and stderr."""
    tool = Path(sys.executable).with_name(name)
    exe = str(tool) if tool.exists() else shutil.which(name)
    assert exe, f"{name} is not installed (pip install '.[test]')"
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=env)
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"{name} exited {out.returncode}:\n{text[-3000:]}"
    return text


def interop_failures(base: str, user: str, password: str, logdir: Path) -> tuple[list[str], str]:
    """DMTF's Interop Validator with OpenStack Ironic's profile against `base`: its FAIL lines, its output."""
    text = run_validator(
        "rf_interop_validator", "-r", base, "-u", user, "-p", password, "--authtype", "Basic",
        "--logdir", str(logdir), "--nooemcheck", str(INTEROP_PROFILE),
    )  # fmt: skip
    lines = text.splitlines()
    fails = [line for line in lines if "FAIL -" in line or ("Fail:" in line and "Fail: 0" not in line)]
    return fails, text


def service_failures(base: str, user: str, password: str, logdir: Path) -> tuple[list[str], str]:
    """DMTF's Service Validator against `base`, offline on the repository's CSDL: its FAIL lines and
    its output."""
    text = run_validator(
        "rf_service_validator", "-r", base, "-u", user, "-p", password, "--authtype", "Basic",
        "--logdir", str(logdir), "--schema_directory", str(CSDL), "--skipschema",
    )  # fmt: skip
    lines = text.splitlines()
    fails = [line for line in lines if "FAIL" in line and "Fail: 0" not in line and "|" not in line]
    return fails, text
