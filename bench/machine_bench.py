#!/usr/bin/env python3
"""State machine benchmark: cached state reads/s, and the time from an action to the observed state.

    python bench/machine_bench.py [--vms 100] [--duration 3] [--cycles 20] [--delay 0.0] [--json]

One process: the emulator (its own thread and loop, as in the tests) and a KubeVirtHub holding one
Machine per VM (standalone mode, shared watches per namespace). Reads: `power_status()` round-robin over
all machines from one thread for `--duration` seconds (reads/s, p50/p99 µs per read). Actions: for
`--cycles` on/off cycles of one VM, the time from `act()` being called to (a) KubeVirt's answer and
(b) `power_status()` showing On (resp. Off) through the watch; the fake KubeVirt's own start/stop delay
is `--delay` seconds (0 measures our path: API calls, request records, Events, watch latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration" / "machine"))

from machine_cluster import Cluster, crd_files  # noqa: E402

from vmbmc.kubevirt.hub import KubeVirtHub  # noqa: E402
from vmbmc.machine import Machine, PowerAction, PowerState, Protocol, Requester  # noqa: E402
from vmbmc_devcluster.emulator.harness import EmulatorThread  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_state(m: Machine, state: PowerState, timeout: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout
    while m.power_status().state is not state:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{m.vm} did not reach {state}")
        await asyncio.sleep(0.001)


def read_loop(machines: list[Machine], duration: float) -> dict[str, float]:
    samples: list[float] = []
    count = 0
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        for m in machines:
            t0 = time.perf_counter_ns()
            m.power_status()
            samples.append(time.perf_counter_ns() - t0)
            count += 1
    return {
        "reads_per_second": count / duration,
        "read_p50_us": pct(samples, 0.5) / 1000,
        "read_p99_us": pct(samples, 0.99) / 1000,
    }


async def bench(args: argparse.Namespace, emu: EmulatorThread) -> dict[str, Any]:
    cluster = Cluster(emu)
    names = [f"bench{i}" for i in range(args.vms)]
    for n in names:
        cluster.create_vm(n)
    hub = await KubeVirtHub.connect(emu.kubeconfig)
    try:
        t0 = time.perf_counter()
        machines = [await hub.machine_for_vm("default", n) for n in names]
        setup = time.perf_counter() - t0
        # reads from another thread, as the IPMI I/O thread does, while the loop keeps running
        reads = await asyncio.get_running_loop().run_in_executor(None, read_loop, machines, args.duration)
        m = machines[0]
        answer: dict[str, list[float]] = {"on": [], "off": []}
        observed: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(args.cycles):
            for action, state in ((PowerAction.ON, PowerState.ON), (PowerAction.OFF, PowerState.OFF)):
                who = Requester(Protocol.REDFISH, "bench", "127.0.0.1", f"bench-{i}-{action}")
                t0 = time.perf_counter()
                await m.act(action, who)
                answer[action.value].append(time.perf_counter() - t0)
                await wait_state(m, state)
                observed[action.value].append(time.perf_counter() - t0)
        result: dict[str, Any] = {"vms": args.vms, "machines_setup_s": round(setup, 3), **reads}
        for key in ("on", "off"):
            result[f"{key}_answer_p50_ms"] = statistics.median(answer[key]) * 1000
            result[f"{key}_observed_p50_ms"] = statistics.median(observed[key]) * 1000
            result[f"{key}_observed_p95_ms"] = pct(observed[key], 0.95) * 1000
        return result
    finally:
        await hub.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.0, help="fake KubeVirt start/stop delay, seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorThread(
            kubeconfig=Path(tmp) / "kubeconfig",
            crds=crd_files(),
            kubevirt_options={"start_delay": args.delay, "stop_delay": args.delay},
            rbac=False,  # the figures in bench/README.md were taken without TLS and RBAC
        ) as emu,
    ):
        result = asyncio.run(bench(args, emu))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:24} {value:.3f}" if isinstance(value, float) else f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
