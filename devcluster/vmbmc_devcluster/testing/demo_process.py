"""Run `vmbmc demo` as a user would: started in a session of its own, ready once its endpoints file
appears (bounded in time), stopped with SIGTERM and, failing that, killed with everything it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmbmc_devcluster.testing.waiting import wait_until

VMBMC = str(Path(sys.executable).with_name("vmbmc"))


@dataclass
class DemoProcess:
    proc: subprocess.Popen[bytes]
    log: Path  # its stdout and stderr
    endpoints: dict[str, Any]  # the endpoints file

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL to its whole session if it is not gone within `timeout` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_demo(
    tmp: Path,
    *args: str,
    timeout: float = 60,
    vmbmc: str = VMBMC,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> DemoProcess:
    """`vmbmc demo --endpoints-file <tmp>/endpoints.json ARGS`, its output in <tmp>/demo.log; returns once
    the endpoints file is there (every BMC answers), or fails with the output after `timeout` seconds."""
    endpoints, log = tmp / "endpoints.json", tmp / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [vmbmc, "demo", "--endpoints-file", str(endpoints), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    demo = DemoProcess(proc, log, {})
    try:
        wait_until(lambda: endpoints.exists() or proc.poll() is not None, timeout, "the endpoints file")
        assert endpoints.exists(), f"no endpoints file; the demo's output:\n{demo.output()[-5000:]}"
    except BaseException:
        demo.kill()
        raise
    demo.endpoints = json.loads(endpoints.read_text())
    return demo
