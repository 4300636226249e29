"""Controller benchmark (issue 7): N VMs created at once in the emulator → time until every
auto-created VirtualMachineBMC is Ready; the controller's CPU and RSS; Event latency from a VM's
power change to its PoweredOn Event.

The controller runs as its own process (`vmbmc controller`), so its CPU and RSS are its own; the
emulator's fake kubelet marks kbmc pods Ready without running them: the benchmark measures
the controller alone.

    python bench/controller_bench.py [--vms 1000] [--starts 50] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmbmc_devcluster.demo.samples import sample_vm  # noqa: E402
from vmbmc_devcluster.emulator.harness import EmulatorThread  # noqa: E402

SYSTEM = "virtualmachinebmc-system"


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of a process from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu, rss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=50, help="VMs started to measure Event latency")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    crds = [ROOT / "crds" / "virtualmachinebmc.yaml"]
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorThread(
            kubeconfig=Path(tmp) / "kubeconfig",
            crds=crds,
            kubevirt_options={"start_delay": 0.1, "stop_delay": 0.1},
            rbac=False,  # the figures in bench/README.md were taken without TLS and RBAC
        ) as emu,
    ):
        store, reg = emu.emulator.store, emu.emulator.registry
        ns_rt = reg.get("", "v1", "namespaces")
        for ns in (SYSTEM, "bench"):
            emu.call(
                store.create, ns_rt, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None
            )
        ctl = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vmbmc",
                "controller",
                "--kubeconfig",
                str(emu.kubeconfig),
                "--health-port",
                "0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "controller.log", "w"),  # noqa: SIM115
        )
        try:
            time.sleep(2)
            vm_rt, bmc_rt = (
                reg.get("kubevirt.io", "v1", "virtualmachines"),
                reg.get("virtualmachine.kubevirt.io", "v1", "virtualmachinebmcs"),
            )
            t0 = time.monotonic()
            for i in range(args.vms):
                vm = copy.deepcopy(sample_vm(1, "bench"))
                vm["metadata"]["name"] = f"vm-{i}"
                emu.call(store.create, vm_rt, vm, "bench")
            created = time.monotonic() - t0

            def ready() -> int:
                items, _ = store.list(bmc_rt, SYSTEM)
                return sum(1 for b in items if (b.get("status") or {}).get("ready"))

            peak_rss = 0.0
            while (n := emu.call(ready)) < args.vms:
                if ctl.poll() is not None:
                    raise SystemExit(
                        "controller exited:\n" + (Path(tmp) / "controller.log").read_text()[-3000:]
                    )
                peak_rss = max(peak_rss, proc_stats(ctl.pid)[1])
                if time.monotonic() - t0 > args.timeout:
                    raise SystemExit(f"only {n}/{args.vms} BMCs Ready after {args.timeout:.0f} s")
                time.sleep(0.5)
            all_ready = time.monotonic() - t0
            cpu, rss = proc_stats(ctl.pid)
            # Event latency: start VMs one by one; from the VMI Running to the PoweredOn Event.
            ev_rt, vmi_rt = (
                reg.get("", "v1", "events"),
                reg.get("kubevirt.io", "v1", "virtualmachineinstances"),
            )
            latencies = []
            for i in range(min(args.starts, args.vms)):
                name = f"vm-{i}"
                emu.call(emu.kubevirt.virtctl, "bench", name, "start")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    vmi = emu.call(store.try_get, vmi_rt, "bench", name)
                    if vmi and (vmi.get("status") or {}).get("phase") == "Running":
                        break
                    time.sleep(0.005)
                running = time.monotonic()
                while time.monotonic() < deadline:
                    items, _ = emu.call(store.list, ev_rt, "bench")
                    if any(e["reason"] == "PoweredOn" and e["involvedObject"]["name"] == name for e in items):
                        break
                    time.sleep(0.005)
                latencies.append(time.monotonic() - running)
        finally:
            ctl.terminate()
            ctl.wait(15)
    in_order = [round(t * 1000) for t in latencies]  # the first starts meet the end of the burst
    latencies.sort()
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "vms": args.vms,
        "create_s": round(created, 1),
        "all_bmcs_ready_s": round(all_ready, 1),
        "controller_cpu_s": round(cpu, 1),
        "controller_rss_mib": round(rss, 1),
        "controller_peak_rss_mib": round(max(peak_rss, rss), 1),
        "event_latency_p50_ms": round(statistics.median(latencies) * 1000),
        "event_latency_max_ms": round(latencies[-1] * 1000),
        "event_latencies_ms": in_order,
        "emulator_process_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),  # emulator + this script
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
