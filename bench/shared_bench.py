"""Shared kbmc mode benchmark (issue 20): N VMs created at once in the emulator → time until every
auto-created VirtualMachineBMC is Ready, with the controller in `--kbmc-mode dedicated` and `shared`;
the controller's RSS; the shared kbmc's RSS serving N BMCs; ipmitool against every one of them. CPU
seconds of the emulator (this process: its thread, mostly), the controller and the shared kbmc, the
load average before and after, and a timeline of the BMCs created, reconciled, served and Ready.

The controller runs as its own process (`vmbmc controller`). The emulator's fake kubelet marks kbmc pods
Ready without running them. In shared mode a BMC is Ready only once the shared kbmc says
it serves it (`status.serving`), so the shared kbmc runs for real: one `vmbmc kbmc --shared` process on
127.0.0.1 with the watches a pod has (`VMBMC_RESTRICTED=1`: one name-limited watch per BMC, VM and VMI,
as its Roles allow), started before the VMs are created. Its RSS is read from /proc once every BMC is
Ready and again after ipmitool has asked every BMC for its power status (`-I lanplus`, 8 at a time).

    python bench/shared_bench.py [--vms 1000] [--modes dedicated,shared] [--json]
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.controller_bench import proc_stats  # noqa: E402
from vmbmc.roster import NAME, parse_roster  # noqa: E402
from vmbmc_devcluster.demo.samples import sample_vm  # noqa: E402
from vmbmc_devcluster.emulator.harness import EmulatorThread  # noqa: E402

SYSTEM = "virtualmachinebmc-system"
CREATE_BATCH = 50  # VMs created per call on the emulator's loop
TIMELINE_STEP = 5.0  # seconds between two points of the progress timeline


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vmbmc", *args],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
        env=env,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_mode(
    mode: str, vms: int, timeout: float, tmp: Path, rbac: bool = False, restricted: bool = True
) -> dict[str, Any]:
    crds = [ROOT / "crds" / "virtualmachinebmc.yaml"]
    result: dict[str, Any] = {"mode": mode, "vms": vms, "api": "https+rbac" if rbac else "http"}
    with EmulatorThread(
        kubeconfig=tmp / f"{mode}.kubeconfig",
        crds=crds,
        kubevirt_options={"start_delay": 0.1, "stop_delay": 0.1},
        # as bench/controller_bench.py by default: figures comparable with bench/README.md's; --rbac: https
        # with RBAC as in a cluster (every watch of the shared kbmc is then a TLS connection)
        rbac=rbac,
    ) as emu:
        store, reg = emu.emulator.store, emu.emulator.registry
        ns_rt = reg.get("", "v1", "namespaces")
        for ns in (SYSTEM, "bench"):
            emu.call(
                store.create, ns_rt, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None
            )
        kc = str(emu.kubeconfig)
        procs = {
            "controller": _start(
                ["controller", "--kubeconfig", kc, "--health-port", "0", "--kbmc-mode", mode],
                tmp / f"{mode}-controller.log",
            )
        }
        if mode == "shared":
            env = {**os.environ, "VMBMC_RESTRICTED": "1" if restricted else "0"}
            result["kbmc_watches"] = "per BMC" if restricted else "per namespace"
            procs["kbmc"] = _start(
                [
                    "kbmc",
                    "--shared",
                    SYSTEM,
                    "--address",
                    "127.0.0.1",
                    "--kubeconfig",
                    kc,
                    "--health-port",
                    "-1",
                ],
                tmp / f"{mode}-kbmc.log",
                env,
            )
        try:
            time.sleep(2)
            vm_rt = reg.get("kubevirt.io", "v1", "virtualmachines")
            bmc_rt = reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs")
            result["load_before"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
            emulator_cpu0 = proc_stats(os.getpid())[0]  # this process: the emulator's thread, mostly
            t0 = time.monotonic()

            def create(first: int, count: int) -> None:
                for i in range(first, first + count):
                    vm = copy.deepcopy(sample_vm(1, "bench"))
                    vm["metadata"]["name"] = f"vm-{i}"
                    store.create(vm_rt, vm, "bench")

            # CREATE_BATCH at a time on the emulator's loop: one call per VM would wait for a loop turn
            # each, and a loop busy with the controller would spread the burst over half a minute
            for first in range(0, vms, CREATE_BATCH):
                emu.call(create, first, min(CREATE_BATCH, vms - first), timeout=120)
            result["create_s"] = round(time.monotonic() - t0, 1)

            def progress() -> tuple[int, int, int, int]:
                """BMCs existing, reconciled (observedGeneration), served (serving), Ready: read on the
                stored objects, not copies, so the poll does not load the emulator it measures."""
                status = [b.get("status") or {} for b in store.iter_raw(bmc_rt, SYSTEM)]
                return (
                    len(status),
                    sum(1 for s in status if s.get("observedGeneration")),
                    sum(1 for s in status if s.get("serving")),
                    sum(1 for s in status if s.get("ready")),
                )

            peak, next_mark = 0.0, 0.0
            timeline: list[str] = []
            # a loop this busy may take a while to answer: the bench waits, it is not what is measured
            while (counts := emu.call(progress, timeout=120))[3] < vms:
                n = counts[3]
                if time.monotonic() - t0 >= next_mark:  # where the BMCs are, every TIMELINE_STEP seconds
                    timeline.append(f"{time.monotonic() - t0:.0f}s:" + "/".join(map(str, counts)))
                    next_mark += TIMELINE_STEP
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        log = (tmp / f"{mode}-{name}.log").read_text()[-3000:]
                        raise SystemExit(f"{name} exited:\n{log}")
                peak = max(peak, proc_stats(procs["controller"].pid)[1])
                if time.monotonic() - t0 > timeout:
                    raise SystemExit(f"{mode}: only {n}/{vms} BMCs Ready after {timeout:.0f} s")
                time.sleep(0.25)
            result["all_bmcs_ready_s"] = round(time.monotonic() - t0, 1)
            result["timeline_bmcs/reconciled/serving/ready"] = " ".join(timeline)
            result["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
            result["emulator_cpu_s"] = round(proc_stats(os.getpid())[0] - emulator_cpu0, 1)
            cpu, rss = proc_stats(procs["controller"].pid)
            result["controller_cpu_s"] = round(cpu, 1)
            result["controller_rss_mib"] = round(rss, 1)
            result["controller_peak_rss_mib"] = round(max(peak, rss), 1)
            if mode == "shared":
                kbmc = procs["kbmc"].pid
                cpu, rss = proc_stats(kbmc)
                result["kbmc_cpu_at_ready_s"] = round(cpu, 1)
                result["kbmc_rss_mib"] = round(rss, 1)
                answered, seconds = ipmi_sweep(emu)
                result["ipmitool_answered"] = f"{answered}/{vms}"
                result["ipmitool_sweep_s"] = round(seconds, 1)
                cpu, rss = proc_stats(kbmc)
                result["kbmc_rss_after_sweep_mib"] = round(rss, 1)
                result["kbmc_cpu_s"] = round(cpu, 1)
        finally:
            for proc in procs.values():
                _stop(proc)
    return result


def ipmi_sweep(emu: EmulatorThread) -> tuple[int, float]:
    """ipmitool -I lanplus power status against every BMC the roster lists, on its own port with its own
    password; → (answered, seconds)."""
    store, reg = emu.emulator.store, emu.emulator.registry
    roster = parse_roster(emu.call(store.try_get, reg.get("", "v1", "configmaps"), SYSTEM, NAME, timeout=120))
    secrets_rt = reg.get("", "v1", "secrets")

    def one(entry: Any) -> bool:
        secret = emu.call(store.try_get, secrets_rt, SYSTEM, entry.secret, timeout=120)
        data = (secret or {}).get("data") or {}
        user, password = (base64.b64decode(data[k]).decode() for k in ("username", "password"))
        cmd = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(entry.ipmi_port), "-U", user]
        out = subprocess.run(
            [*cmd, "-P", password, "power", "status"], capture_output=True, text=True, timeout=60
        )
        return out.stdout.startswith("Chassis Power is")

    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answered = sum(pool.map(one, roster.values()))
    return answered, time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--modes", default="dedicated,shared")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--rbac", action="store_true", help="emulator over https with RBAC (admin token)")
    parser.add_argument(
        "--unrestricted-kbmc",
        action="store_true",
        help="the shared kbmc watches VMs, VMIs and BMCs once per namespace (an admin's rights), not per BMC",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            r = run_mode(mode, args.vms, args.timeout, Path(tmp), args.rbac, not args.unrestricted_kbmc)
            results.append(r)
            if not args.json:  # each mode as soon as it is done: a 1,000-VM run takes minutes
                print(" ".join(f"{k}={v}" for k, v in r.items()), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
