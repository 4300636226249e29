"""Emulator benchmark: objects created per second, watch events per second, memory per 1,000 VMs.

Run: python bench/emulator_bench.py [--vms 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

import aiohttp

from vmbmc_devcluster.emulator.harness import EmulatorThread


def _vm(i: int) -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": f"bench-vm-{i}", "namespace": "default"},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "spec": {
                    "domain": {
                        "devices": {
                            "disks": [{"name": "root", "disk": {"bus": "virtio"}}],
                            "interfaces": [{"name": "default", "masquerade": {}}],
                        }
                    }
                }
            },
        },
    }


async def run(url: str, token: str, n: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    base = f"{url}/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
    async with aiohttp.ClientSession(headers=headers) as session:
        seen = 0
        done = asyncio.Event()

        async def watch() -> None:
            nonlocal seen
            async with session.get(base, params={"watch": "true", "resourceVersion": "1"}) as resp:
                async for _line in resp.content:
                    seen += 1
                    if seen >= n:
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        sem = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            async with sem, session.post(base, data=json.dumps(_vm(i))) as resp:
                assert resp.status == 201, await resp.text()

        t0 = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(n)))
        created = time.perf_counter() - t0
        await asyncio.wait_for(done.wait(), 60)
        watched = time.perf_counter() - t0
        watcher.cancel()
    return {"created_per_s": n / created, "watch_events_per_s": n / watched}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=1000)
    args = parser.parse_args()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # AlwaysAllow over http: the figures measure the API server, not TLS or RBAC (recorded that way)
    with EmulatorThread(kubevirt=True, rbac=False) as emu:
        figures = asyncio.run(run(emu.url, emu.token, args.vms))
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures["rss_mib_per_1000_vms"] = (rss1 - rss0) / 1024 * 1000 / args.vms
    print(json.dumps({k: round(v, 1) for k, v in figures.items()}, indent=2))


if __name__ == "__main__":
    main()
