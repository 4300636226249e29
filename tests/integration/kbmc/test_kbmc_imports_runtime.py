"""A running `vmbmc kbmc --bmc` with Redfish enabled, after serving ipmitool (lanplus, so AES) and a
Redfish GET over its self-signed HTTPS, has imported none of the libraries it must not load
(docs/kbmc.md, "Memory"). Python's own import log (PYTHONPROFILEIMPORTTIME) lists every module the
process imported, lazy imports included."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from kbmc_process import PASSWORD, USER, serve_new_bmc
from machine_cluster import Cluster

from tests.unit.kbmc.test_kbmc_imports import FORBIDDEN  # one list: the unit test's
from vmbmc_devcluster.emulator.harness import EmulatorThread


def test_running_kbmc_imports(
    emu: EmulatorThread, cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # the kbmc inherits it; its stderr goes to its log
    served = serve_new_bmc(emu, cluster, tmp_path, "imports", redfish="https")
    kbmc = served.kbmc
    try:
        out = kbmc.ipmitool("-C", "17", "power", "status")
        assert out.returncode == 0, out.stderr
        answer = httpx.get(
            f"{served.redfish}/redfish/v1/Systems", auth=(USER, PASSWORD), verify=False, timeout=10
        )
        assert answer.status_code == 200
    finally:
        kbmc.stop()
    imported = {
        m.group(1).split(".")[0]
        for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", kbmc.logs(), re.M)
    }
    assert {"vmbmc", "uvicorn", "starlette"} <= imported  # the log is complete: Redfish was loaded
    assert sorted(imported & set(FORBIDDEN)) == []
