"""How `vmbmc demo` fails: one line naming the cause and what to do, pointing only at files that exist
(a failed start keeps its temporary workdir, and says so), no traceback; and the ceiling of dedicated mode
said before anything starts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vmbmc.naming import SYSTEM_NAMESPACE
from vmbmc_devcluster.demo import cli
from vmbmc_devcluster.demo.cluster import CONTROLLER_SELECTOR, StartupFailed, wait_for_bmcs
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.plugin import crd_files
from vmbmc_devcluster.testing.waiting import wait_until

VMBMC = str(Path(sys.executable).with_name("vmbmc"))


def test_dedicated_mode_above_its_limit_is_refused_before_anything_starts(tmp_path: Path) -> None:
    over = cli.dedicated_limit() + 1
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    argv = [VMBMC, "demo", "--vms", str(over)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2 and out.stdout == "", out
    (line,) = out.stderr.splitlines()
    assert line == (
        f"vmbmc demo: dedicated mode runs a process per VM: above {over - 1} VMs on this machine "
        f"({os.cpu_count()} CPUs) use --kbmc-mode shared"
    )
    assert list(tmp_path.iterdir()) == []  # no workdir was made: nothing started


@pytest.mark.timeout(180)
def test_a_failed_start_is_one_line_and_keeps_the_logs_it_names(tmp_path: Path) -> None:
    """The real demo (emulator, controller pod), made to give up 1 s into its wait for a Ready BMC (no
    controller makes one that fast), as it does after STALL_S on a machine too busy for it."""
    code = (
        "import sys; import vmbmc_devcluster.demo.cluster as c; c.STALL_S = 1.0; "
        "from vmbmc.cli import main; sys.exit(main(['demo', '--vms', '1']))"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 1, (stdout, stderr)
    assert "Traceback" not in stdout + stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last == stderr.strip() and stdout == "", (stdout, stderr)  # the failure is all it printed
    match = re.fullmatch(
        r"vmbmc demo: 0 of 1 BMCs Ready and none more for 1 s \(waiting for default/demo-vm-1"
        r"; default/demo-vm-1: [^;()]+\): a busy machine starts fewer --vms, or --kbmc-mode shared, sooner; "
        r"(the pods' logs are in (?P<pods>\S+)|nothing ran) "
        r"\(the workdir (?P<work>\S+) is kept: remove it when done\)",
        last,
    )
    assert match, last
    work = Path(match["work"])
    assert work.parent == tmp_path and (work / "kubeconfig").is_file()
    if match["pods"]:
        assert Path(match["pods"]) == work / "pods" and any(Path(match["pods"]).rglob("*.log"))


@pytest.mark.timeout(120)
def test_a_controller_pod_that_does_not_run_ends_the_wait_naming_it() -> None:
    with EmulatorThread(rbac=False, crds=crd_files()) as emu:
        pods = emu.emulator.registry.get("", "v1", "pods")

        def make() -> None:
            namespaces = emu.emulator.registry.get("", "v1", "namespaces")
            emu.emulator.store.create(namespaces, {"metadata": {"name": SYSTEM_NAMESPACE}})
            labels = dict(label.split("=") for label in CONTROLLER_SELECTOR.split(","))
            pod = {
                "metadata": {"name": "vmbmc-controller-0", "labels": labels},
                "spec": {"containers": [{"name": "controller", "image": "vmbmc:dev"}]},
            }
            emu.emulator.store.create(pods, pod, SYSTEM_NAMESPACE)

        emu.call(make)

        def running() -> bool:
            pod = emu.emulator.store.get(pods, SYSTEM_NAMESPACE, "vmbmc-controller-0")
            return (pod.get("status") or {}).get("phase") == "Running"

        wait_until(lambda: emu.call(running), 30, "the pod running")

        def crashed(pod: dict) -> None:  # what the kubelet writes once its container exited
            pod["status"]["containerStatuses"][0]["restartCount"] = 1

        emu.call(emu.emulator.store.mutate, pods, SYSTEM_NAMESPACE, "vmbmc-controller-0", crashed)
        with pytest.raises(StartupFailed) as failed:
            asyncio.run(asyncio.wait_for(wait_for_bmcs(emu, [("default", "demo-vm-1")], stall=60), 60))
    assert str(failed.value) == "the controller pod vmbmc-controller-0 does not run (it exited 1 time(s))"
