"""Fault injection against a real `vmbmc kbmc` and a real `vmbmc controller` (both processes) on the
emulator: the KubeVirt API hung or refusing, the kbmc killed in the middle of a request, the controller
killed in the middle of its work, 20 clients at once. Every request ends carried out or `failed`/`unknown`
with a Warning Event, none stays `pending`, and the power history explains every transition once.

Each scenario is bounded in count and time; the long runs repeat them and are marked `slow`
(figures in bench/README.md).
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kbmc_process import VMBMC, serve_new_bmc
from kbmc_process import ServedBmc as Bmc
from machine_cluster import Cluster
from test_machine_outage_emulator import Proxy

from tests.log_secrets import kubeconfig_tokens, leaks
from vmbmc.machine.requests import CALL_BOUND_SECONDS, LATE_TEXT
from vmbmc_devcluster.emulator.emulator import FaultRule
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.waiting import wait_until

SYSTEM = "virtualmachinebmc-system"
ONE_TRY = ("-R", "1", "-N", "5")  # ipmitool: one try, 5 s timeout: the kbmc's own answer is timed
_serial = iter(range(1, 1_000_000))


def figure(name: str, value: str) -> None:
    """A measured figure for bench/README.md (seen with `pytest -s`)."""
    print(f"FIGURE {name}: {value}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the controller, as a process that can be killed ------------------------------------------------


@dataclass
class ControllerProcess:
    proc: subprocess.Popen[str]
    log: Path
    secrets: tuple[str, ...] = ()

    def kill(self) -> None:
        """SIGKILL: no clean-up, as an OOM kill or a node loss."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.check()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.check()

    def check(self) -> None:
        found = leaks(self.log.read_text(), self.secrets)  # its log never holds its token
        assert not found, f"secrets in {self.log}: {found}"


def start_controller(emu: EmulatorThread, workdir: Path) -> ControllerProcess:
    log = workdir / f"controller-{next(_serial)}.log"
    proc = subprocess.Popen(
        [
            VMBMC,
            "controller",
            "--kubeconfig",
            str(emu.kubeconfig),
            "--namespace",
            SYSTEM,
            "--no-auto-create",
            "--health-port",
            "0",
            "--health-address",
            "127.0.0.1",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"},
    )
    return ControllerProcess(proc, log, tuple(kubeconfig_tokens(emu.kubeconfig)))


@pytest.fixture(scope="module")
def controller_dir(emu: EmulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ns = emu.emulator.registry.get("", "v1", "namespaces")
    if emu.call(emu.emulator.store.try_get, ns, None, SYSTEM) is None:
        emu.call(emu.emulator.store.create, ns, {"metadata": {"name": SYSTEM}})
    return tmp_path_factory.mktemp("controller")


@pytest.fixture(scope="module")
def controller(emu: EmulatorThread, controller_dir: Path) -> Iterator[ControllerProcess]:
    proc = start_controller(emu, controller_dir)
    yield proc
    proc.stop()


# --- one VM with its BMC and kbmc per test ------------------------------------------------------------


def new_bmc(emu: EmulatorThread, cluster: Cluster, workdir: Path, *, redfish: bool = False) -> Bmc:
    return serve_new_bmc(emu, cluster, workdir, "fault", redfish="http" if redfish else "")


@pytest.fixture
def bmc(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> Iterator[Bmc]:
    made = new_bmc(emu, cluster, tmp_path)
    yield made
    emu.emulator.faults.clear()
    made.kbmc.stop()


def records(cluster: Cluster, bmc: Bmc) -> list[dict[str, Any]]:
    return list(((cluster.bmc(bmc.name) or {}).get("status") or {}).get("requests") or [])


def record(cluster: Cluster, bmc: Bmc, request_id: str) -> dict[str, Any] | None:
    return next((r for r in records(cluster, bmc) if r["id"] == request_id), None)


def history(cluster: Cluster, bmc: Bmc) -> list[dict[str, Any]]:
    return list(((cluster.bmc(bmc.name) or {}).get("status") or {}).get("powerHistory") or [])


def warnings(cluster: Cluster, bmc: Bmc, request_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in cluster.events_for(bmc.name)
        if e["type"] == "Warning" and e["reason"] == "PowerActionFailed" and request_id in e["message"]
    ]


def power(
    bmc: Bmc, verb: str, extra: tuple[str, ...] = ONE_TRY
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    out = bmc.kbmc.ipmitool("chassis", "power", verb, extra=extra)
    return out, time.monotonic() - started


def powered(cluster: Cluster, bmc: Bmc, on: bool) -> bool:
    vmi = cluster.vmi(bmc.vm)
    running = vmi is not None and (vmi.get("status") or {}).get("phase") == "Running"
    deleting = vmi is not None and bool(vmi["metadata"].get("deletionTimestamp"))
    return running and not deleting if on else vmi is None


def newest_request(cluster: Cluster, bmc: Bmc, action: str) -> dict[str, Any]:
    found = [r for r in records(cluster, bmc) if r["action"] == action]
    assert found, records(cluster, bmc)
    return found[-1]


def hold(emu: EmulatorThread, bmc: Bmc, call: str, *, status: int | None = None) -> FaultRule:
    """The API server hangs on this VM's `call` subresource (up to 120 s, until released)."""
    return emu.emulator.faults.add(
        "PUT", rf"/virtualmachines/{bmc.vm}/{call}$", delay=120.0, hold=True, status=status
    )


def watched(cluster: Cluster, bmc: Bmc) -> None:
    """The controller knows the VM (Off): a transition before it ever saw the VM is not history."""
    wait_until(
        lambda: ((cluster.bmc(bmc.name) or {}).get("status") or {}).get("powerState") == "Off",
        timeout=60,
        what="the controller observing the VM",
    )


def power_on(cluster: Cluster, bmc: Bmc) -> str:
    out, _ = power(bmc, "on")
    assert "Chassis Power Control: Up/On" in out.stdout, out.stdout + out.stderr
    wait_until(lambda: powered(cluster, bmc, True), what="VM running")
    return str(newest_request(cluster, bmc, "on")["id"])


# --- the API server hung or refusing ------------------------------------------------------------------


def test_hung_api_power_off_errs_in_time_and_a_late_stop_says_so(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc, controller: ControllerProcess
) -> None:
    watched(cluster, bmc)
    power_on(cluster, bmc)
    rule = hold(emu, bmc, "stop")
    out, took = power(bmc, "off")
    # the kbmc's own C0h within ipmitool's one try (ONE_TRY), not ipmitool giving up on a late answer
    assert out.returncode != 0 and "Node busy" in out.stdout + out.stderr, out
    figure("hung API: ipmitool power off answered (whole process)", f"{took:.2f} s: {out.stderr.strip()}")
    req = newest_request(cluster, bmc, "off")
    started = time.monotonic()
    # no answer within the bound: unknown (the call reached the API server), with a Warning Event
    wait_until(
        lambda: (record(cluster, bmc, req["id"]) or {}).get("effect") == "unknown",
        timeout=CALL_BOUND_SECONDS + 10,
        what="the request unknown after the bound",
    )
    wait_until(lambda: warnings(cluster, bmc, req["id"]), what="a PowerActionFailed Warning Event")
    figure("hung API: record unknown + Warning Event after the answer", f"{time.monotonic() - started:.1f} s")
    assert powered(cluster, bmc, True)  # nothing carried out while the API hangs
    rule.release()  # the API server comes back and carries the held stop out after all
    wait_until(lambda: powered(cluster, bmc, False), what="the late stop")
    entry = wait_until(
        lambda: next((h for h in history(cluster, bmc) if h["to"] == "Off"), None),
        what="PoweredOff in the history",
    )
    assert entry["cause"] == "Request" and entry["requestId"] == req["id"], entry
    assert LATE_TEXT in entry["message"], entry
    # the kbmc never sent it again: one stop reached KubeVirt
    assert all(r["effect"] != "pending" for r in records(cluster, bmc))


def test_refusing_api_power_off_fails_and_nothing_runs_later(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc
) -> None:
    power_on(cluster, bmc)
    emu.emulator.faults.add("PUT", rf"/virtualmachines/{bmc.vm}/stop$", status=503)  # virt-api down
    out, took = power(bmc, "off")
    assert out.returncode != 0 and "Node busy" in out.stdout + out.stderr, out  # C0h, within one try
    figure("refusing API: ipmitool power off answered", f"{took:.2f} s: {out.stderr.strip()}")
    req = newest_request(cluster, bmc, "off")
    wait_until(
        lambda: (record(cluster, bmc, req["id"]) or {}).get("effect") == "failed",
        timeout=CALL_BOUND_SECONDS + 10,
        what="the request failed after the bound",
    )
    wait_until(lambda: warnings(cluster, bmc, req["id"]), what="a PowerActionFailed Warning Event")
    emu.emulator.faults.clear()  # the API comes back: nothing was sent after the bound
    status = bmc.kbmc.ipmitool("chassis", "power", "status")
    assert "Chassis Power is on" in status.stdout, status.stdout + status.stderr
    assert powered(cluster, bmc, True)


def test_hung_api_redfish_reset_answers_503_with_retry_after(
    emu: EmulatorThread, cluster: Cluster, tmp_path: Path
) -> None:
    made = new_bmc(emu, cluster, tmp_path, redfish=True)
    try:
        rule = hold(emu, made, "start")
        started = time.monotonic()
        answer = httpx.post(
            f"{made.redfish}/redfish/v1/Systems/{made.vm}/Actions/ComputerSystem.Reset",
            json={"ResetType": "On"},
            auth=(made.kbmc.user, made.kbmc.password),
            timeout=CALL_BOUND_SECONDS + 20,
        )
        took = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        figure(
            "hung API: Redfish Reset answered 503",
            f"{took:.1f} s, Retry-After {answer.headers['Retry-After']}",
        )
        req = newest_request(cluster, made, "on")
        wait_until(lambda: (record(cluster, made, req["id"]) or {}).get("effect") == "unknown")
        wait_until(lambda: warnings(cluster, made, req["id"]), what="a PowerActionFailed Warning Event")
        rule.release()
    finally:
        emu.emulator.faults.clear()
        made.kbmc.stop()


class ProxyThread:
    """The outage test's TCP proxy on a loop of its own: the API server as the kbmc sees it, stopped
    (connections cut, new ones closed at once) and started again from the test's thread."""

    def __init__(self, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.proxy = Proxy(port)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)

    def stop_api(self) -> None:
        self.loop.call_soon_threadsafe(self.proxy.cut)

    def start_api(self) -> None:
        self.loop.call_soon_threadsafe(setattr, self.proxy, "up", True)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def new_bmc_behind_proxy(emu: EmulatorThread, cluster: Cluster, workdir: Path) -> tuple[Bmc, ProxyThread]:
    """A served BMC whose kbmc reaches the API server through a ProxyThread (to stop and start the API
    under it). The caller closes the proxy and stops the kbmc."""
    made = new_bmc(emu, cluster, workdir)
    made.kbmc.stop()
    proxy = ProxyThread(emu.port)
    config = yaml.safe_load(Path(made.kubeconfig).read_text())
    scheme = emu.url.partition(":")[0]  # the proxy relays TLS untouched
    config["clusters"][0]["cluster"]["server"] = f"{scheme}://127.0.0.1:{proxy.port}"
    Path(made.kubeconfig).write_text(yaml.safe_dump(config))
    made.restart()
    return made, proxy


def test_stopped_api_power_off_errs_in_time_and_nothing_runs_later(
    emu: EmulatorThread, cluster: Cluster, tmp_path: Path
) -> None:
    """The API server stopped (every connection refused): `power off` is answered with an error within
    2 s; once it is back, nothing is carried out late and no record is left `pending`."""
    made, proxy = new_bmc_behind_proxy(emu, cluster, tmp_path)
    try:
        power_on(cluster, made)
        proxy.stop_api()
        out, took = power(made, "off")
        # FFh from the kbmc within ipmitool's one try: the state is not known while the API is down
        assert out.returncode != 0 and "Unspecified error" in out.stdout + out.stderr, out
        figure("stopped API: ipmitool power off answered", f"{took:.2f} s: {out.stderr.strip()}")
        time.sleep(1.0)  # down a while longer
        proxy.start_api()
        wait_until(
            lambda: all(r["effect"] != "pending" for r in records(cluster, made)),
            timeout=CALL_BOUND_SECONDS + 20,
            what="nothing pending",
        )
        status = made.kbmc.ipmitool("chassis", "power", "status")
        assert "Chassis Power is on" in status.stdout, status.stdout + status.stderr
        assert powered(cluster, made, True)
    finally:
        made.kbmc.stop()
        proxy.close()


# --- the kbmc killed in the middle of a request -------------------------------------------------------


def kill(bmc: Bmc) -> None:
    bmc.kbmc.proc.send_signal(signal.SIGKILL)
    bmc.kbmc.proc.wait(10)


def test_kbmc_killed_right_after_answering_power_on(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc, controller: ControllerProcess
) -> None:
    watched(cluster, bmc)
    out, _ = power(bmc, "on")
    kill(bmc)
    assert "Chassis Power Control: Up/On" in out.stdout, out.stdout + out.stderr
    req = newest_request(cluster, bmc, "on")
    bmc.restart()
    wait_until(
        lambda: all(r["effect"] != "pending" for r in records(cluster, bmc)),
        timeout=CALL_BOUND_SECONDS + 20,
        what="nothing pending",
    )
    assert (record(cluster, bmc, req["id"]) or {}).get("effect") == "called"
    entry = wait_until(lambda: next((h for h in history(cluster, bmc) if h["to"] == "On"), None))
    assert entry["requestId"] == req["id"], entry


def test_kbmc_killed_while_kubevirt_takes_the_call(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc, controller: ControllerProcess
) -> None:
    """Killed with the start call in the API server: the restarted kbmc finds the `pending` record and,
    KubeVirt having carried the call out, settles it `called`; the PoweredOn names it."""
    watched(cluster, bmc)
    rule = hold(emu, bmc, "start")
    with ThreadPoolExecutor(1) as pool:
        client = pool.submit(power, bmc, "on")
        wait_until(lambda: [r for r in records(cluster, bmc) if r["effect"] == "pending"], what="pending")
        kill(bmc)
        client.result(timeout=30)
    req = newest_request(cluster, bmc, "on")
    rule.release()
    wait_until(lambda: powered(cluster, bmc, True), what="the start carried out")
    bmc.restart()
    wait_until(
        lambda: (record(cluster, bmc, req["id"]) or {}).get("effect") == "called",
        timeout=CALL_BOUND_SECONDS + 20,  # it waits until no other kbmc could still be at work on it
        what="settled",
    )
    entry = wait_until(lambda: next((h for h in history(cluster, bmc) if h["to"] == "On"), None))
    assert entry["requestId"] == req["id"], entry


def test_kbmc_killed_before_kubevirt_took_the_call(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc, controller: ControllerProcess
) -> None:
    """Killed with the start call in an API server that then refuses it: the restarted kbmc fails the
    `pending` record (never re-sends it), and a later `power on` is credited to the later request."""
    watched(cluster, bmc)
    rule = hold(emu, bmc, "start", status=503)
    with ThreadPoolExecutor(1) as pool:
        client = pool.submit(power, bmc, "on")
        wait_until(lambda: [r for r in records(cluster, bmc) if r["effect"] == "pending"], what="pending")
        kill(bmc)
        client.result(timeout=30)
    old = newest_request(cluster, bmc, "on")
    rule.release()  # answered 503: not carried out
    emu.emulator.faults.clear()  # and the API server is well again
    bmc.restart()
    wait_until(
        lambda: (record(cluster, bmc, old["id"]) or {}).get("effect") == "failed",
        timeout=CALL_BOUND_SECONDS + 20,
        what="failed",
    )
    wait_until(lambda: warnings(cluster, bmc, old["id"]), what="a PowerActionFailed Warning Event")
    assert not powered(cluster, bmc, True)  # never re-sent
    new = power_on(cluster, bmc)
    entry = wait_until(lambda: next((h for h in history(cluster, bmc) if h["to"] == "On"), None))
    assert entry["requestId"] == new != old["id"], entry


# --- the controller killed in the middle of its work --------------------------------------------------


def controller_kills(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc, controller_dir: Path, rounds: int
) -> None:
    """`rounds` power cycles (on, off); the controller is SIGKILLed as each transition happens (a little
    later each time: 0 to 0.3 s, so some kills land between its Event and history writes) and started
    again: the restarted controller records what it missed, and each transition is in the history exactly
    once, with one Event each."""
    proc = start_controller(emu, controller_dir)
    done, catch_up = 0, 0.0
    try:
        # the controller knows the VM (Off) first: a transition before it ever saw the VM is not history
        wait_until(
            lambda: ((cluster.bmc(bmc.name) or {}).get("status") or {}).get("powerState") == "Off",
            timeout=60,
            what="the controller observing the VM",
        )
        for _ in range(rounds):
            for verb, on in (("on", True), ("off", False)):
                out, _ = power(bmc, verb)
                assert out.returncode == 0, out.stdout + out.stderr
                wait_until(lambda on=on: powered(cluster, bmc, on), what=f"power {verb}")
                time.sleep((done % 4) * 0.1)
                proc.kill()  # mid-reconcile: the transition may be half recorded (Events, no history)
                proc = start_controller(emu, controller_dir)
                done += 1
                restarted = time.monotonic()
                wait_until(
                    lambda n=done: len(history(cluster, bmc)) >= n, timeout=60, what=f"transition {done}"
                )
                catch_up = max(catch_up, time.monotonic() - restarted)
    finally:
        proc.stop()
    entries = history(cluster, bmc)
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)) == 2 * rounds, entries
    assert all(e["cause"] == "Request" for e in entries), entries
    requests = [e["requestId"] for e in entries]
    assert len(requests) == len(set(requests)), entries  # no request credited twice
    events = collections.Counter(
        e["metadata"]["name"]
        for e in cluster.events_for(bmc.name)
        if e["reason"] in ("PoweredOn", "PoweredOff")
    )
    assert len(events) == 2 * rounds and set(events.values()) == {1}, events
    figure(
        f"controller SIGKILLed at {done} transitions",
        f"{len(entries)} history entries, {len(events)} Events, 0 duplicates; longest catch-up after a "
        f"restart {catch_up:.1f} s",
    )


def test_controller_killed_mid_reconcile(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc, controller_dir: Path
) -> None:
    controller_kills(emu, cluster, bmc, controller_dir, rounds=2)


@pytest.mark.slow
def test_controller_killed_mid_reconcile_long(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc, controller_dir: Path
) -> None:
    controller_kills(emu, cluster, bmc, controller_dir, rounds=4)  # history keeps 20: 8 fit with room


# --- 20 clients at once -------------------------------------------------------------------------------


def concurrent_power_on(cluster: Cluster, bmc: Bmc, clients: int, rounds: int) -> None:
    """`clients` ipmitool processes ask `power on` at once (then `power off`), `rounds` times: every one
    hears success, KubeVirt gets one call per round, the history one transition per round."""
    before, longest, started = rss_mib(bmc.kbmc.proc.pid), 0.0, time.monotonic()
    for _ in range(rounds):
        for verb, on, word in (("on", True, "Up/On"), ("off", False, "Down/Off")):
            with ThreadPoolExecutor(clients) as pool:
                # ipmitool's defaults: a retransmit each second
                asks = [pool.submit(power, bmc, verb, ()) for _ in range(clients)]
                timed = [ask.result(timeout=60) for ask in asks]
            outs = [out for out, _ in timed]
            longest = max([longest] + [took for _, took in timed])
            failed = [o.stdout + o.stderr for o in outs if f"Chassis Power Control: {word}" not in o.stdout]
            assert not failed, failed[:3]
            wait_until(lambda on=on: powered(cluster, bmc, on), what=f"power {verb}")
            called = [r for r in records(cluster, bmc) if r["action"] == verb and r["effect"] == "called"]
            assert len(called) <= 1, records(cluster, bmc)  # the newest 10 records: at most one call
    wait_until(lambda: all(r["effect"] != "pending" for r in records(cluster, bmc)), what="nothing pending")
    figure(
        f"{clients} ipmitool at once, {rounds} x (power on, power off)",
        f"{2 * rounds * clients} commands in {time.monotonic() - started:.1f} s, all succeeded; longest "
        f"{longest:.2f} s; kbmc RSS {before:.1f} -> {rss_mib(bmc.kbmc.proc.pid):.1f} MiB",
    )


def test_twenty_clients_one_call(emu: EmulatorThread, cluster: Cluster, bmc: Bmc) -> None:
    concurrent_power_on(cluster, bmc, clients=20, rounds=1)


@pytest.mark.slow
def test_twenty_clients_one_call_long(emu: EmulatorThread, cluster: Cluster, bmc: Bmc) -> None:
    concurrent_power_on(cluster, bmc, clients=20, rounds=10)
