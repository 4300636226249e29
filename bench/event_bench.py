#!/usr/bin/env python3
"""Redfish push events (issue 30): how long after its Kubernetes Event a power transition reaches a
subscriber, through the real pieces.

`vmbmc demo --redfish` runs (the emulator, the controller with `--event-destinations 127.0.0.0/8`, the kbmc
pod as a real process); a receiver on 127.0.0.1 subscribes as Ironic does; the VM is powered on and off
over Redfish `--transitions` times. For each transition: the BMC Event's `eventTime` (when the controller
recorded it, microseconds) against the moment the receiver got the POST (same clock). Also the kbmc's RSS
before the subscription and after the deliveries (aiohttp is loaded once a BMC has a subscription).

    python bench/event_bench.py [--transitions 20] [--json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ipmi_bench import rss_mib  # noqa: E402
from tests.event_receiver import receiver  # noqa: E402
from tests.processes import kbmc_pid  # noqa: E402

SYSTEM = "virtualmachinebmc-system"
KUBECTL = str(Path(sys.executable).with_name("kubectl"))


def wait(pred, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout} s")
        time.sleep(0.02)
    return value


def event_times(kubeconfig: str, bmc: str) -> dict[str, float]:
    """Transition id → its BMC Event's eventTime."""
    out = subprocess.run([KUBECTL, "--kubeconfig", kubeconfig, "get", "events", "-n", SYSTEM, "-o", "json"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    times = {}
    for e in json.loads(out)["items"]:
        name = e["metadata"]["name"]
        if name.startswith(bmc + ".") and e.get("eventTime"):
            stamp = datetime.datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00"))
            times[name[len(bmc) + 1 :]] = stamp.timestamp()
    return times


def run(transitions: int) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="event-bench-"))
    endpoints = work / "endpoints.json"
    with open(work / "demo.log", "w") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "vmbmc", "demo", "--redfish", "--vms", "1", "--workdir", str(work / "w"),
             "--endpoints-file", str(endpoints)],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )
    try:
        wait(endpoints.exists, 120, "demo endpoints")
        info = json.loads(endpoints.read_text())
        (bmc_info,) = info["bmcs"]
        bmc = bmc_info["bmc"].split("/")[1]
        vm = bmc_info["vm"].split("/")[1]
        pid = wait(lambda: kbmc_pid(bmc_info["ipmi"]["host"]), 30, "the kbmc process")
        rss_before = rss_mib(pid)
        auth = (bmc_info["username"], bmc_info["password"])
        with receiver() as rx, httpx.Client(base_url=bmc_info["redfish"], auth=auth, verify=False,
                                            timeout=30) as http:
            body = {"Destination": rx.url, "Protocol": "Redfish", "Context": "", "EventTypes": ["Alert"]}
            r = http.post("/EventService/Subscriptions", json=body)
            assert r.status_code == 201, r.text
            for i in range(transitions):
                reset = "On" if i % 2 == 0 else "ForceOff"
                r = http.post(f"/Systems/{vm}/Actions/ComputerSystem.Reset", json={"ResetType": reset})
                assert r.status_code in (200, 204), r.text
                wait(lambda i=i: len(rx.events()) > i, 60, f"event {i + 1}")
            got = {r.event_ids[0]: r.at for r in rx.events()}
        rss_after = rss_mib(pid)
        times = wait(lambda: (t := event_times(info["kubeconfig"], bmc)) and set(got) <= set(t) and t, 30,
                     "the Events")
        latencies = sorted((got[i] - times[i]) * 1000 for i in got)
        return {
            "transitions": len(latencies),
            "delivered_once_each": len(got) == transitions,
            "latency_ms_p50": round(statistics.median(latencies), 1),
            "latency_ms_p90": round(latencies[int(0.9 * (len(latencies) - 1))], 1),
            "latency_ms_max": round(latencies[-1], 1),
            "kbmc_rss_mib_before": round(rss_before, 1),
            "kbmc_rss_mib_after": round(rss_after, 1),
            "load_average": os.getloadavg()[0],
        }
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transitions", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.transitions)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
