"""`vmbmc demo` as a user runs it: the endpoints file appears, the printed commands work, SIGTERM stops it."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.log_secrets import file_leaks, kubeconfig_tokens, kubeconfig_tokens_under, leaks, outside_guide
from vmbmc_devcluster.testing.demo_process import start_demo
from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def demo(tmp_path):
    started = time.monotonic()
    # --verbose: the demo logs at INFO, and test_demo_logs_hold_no_secret scans those lines too
    args = ("--vms", "2", "--redfish", "--verbose", "--workdir", str(tmp_path / "work"))
    demo = start_demo(tmp_path, *args, timeout=30)
    try:
        wait_until(lambda: "Press Ctrl-C" in demo.output(), 10, "the demo's printed guide")
    except BaseException:
        demo.kill()
        raise
    guide = [line.strip() for line in demo.output().splitlines()]
    yield demo.proc, demo.endpoints, time.monotonic() - started, guide
    demo.kill()


def test_demo_endpoints_commands_and_clean_stop(demo):
    proc, doc, _startup, guide = demo  # startup time is a benchmark figure, not a test
    assert set(doc) == {"kubeconfig", "bmcs"} and len(doc["bmcs"]) == 2
    bmc = doc["bmcs"][0]
    assert bmc["vm"] == "default/demo-vm-1" and len(bmc["password"]) == 16 and bmc["password"].isalnum()
    assert bmc["ipmi"]["host"] and bmc["ipmi"]["port"]
    # The printed ipmitool and curl commands work exactly as printed.
    printed = [line for line in guide if line.startswith(("ipmitool ", "curl "))]
    assert any(line.startswith("ipmitool -I lan ") for line in printed), guide  # the seed's IPMI 1.5 flow
    for line in printed:
        if "-X POST" in line:
            continue  # the Redfish power-on is checked below
        out = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, (line, out.stderr)
        if line.startswith("ipmitool "):
            assert out.stdout.strip() == "Chassis Power is off", (line, out)
        else:
            assert json.loads(out.stdout)["PowerState"] == "Off", (line, out.stdout[:200])
    kubectl = [KUBECTL, "--kubeconfig", doc["kubeconfig"]]
    assert "demo-vm-1" in subprocess.run([*kubectl, "get", "vm"], capture_output=True, text=True).stdout
    # The printed Redfish commands, as curl would send them.
    system = f"{bmc['redfish']}/Systems/demo-vm-1"
    auth = (bmc["username"], bmc["password"])
    with httpx.Client(verify=False, auth=auth, timeout=10) as http:
        assert http.get(system).json()["PowerState"] == "Off"
        reset = http.post(f"{system}/Actions/ComputerSystem.Reset", json={"ResetType": "On"})
        assert reset.status_code == 204, reset.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and http.get(system).json()["PowerState"] != "On":
            time.sleep(0.2)
        assert http.get(system).json()["PowerState"] == "On"
    status = subprocess.run(
        [*kubectl, "get", "vm", "demo-vm-1", "-o", "jsonpath={.status.printableStatus}"],
        capture_output=True,
        text=True,
    ).stdout
    assert status == "Running"
    ipmi = bmc["ipmi"]
    out = subprocess.run(
        [
            "ipmitool",
            "-I",
            "lanplus",
            "-H",
            ipmi["host"],
            "-p",
            str(ipmi["port"]),
            "-U",
            bmc["username"],
            "-P",
            bmc["password"],
            "power",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout.strip() == "Chassis Power is on", out
    bns, bname = bmc["bmc"].split("/", 1)

    def describe(*what: str) -> str:
        return subprocess.run(
            [*kubectl, "describe", *what], capture_output=True, text=True, timeout=30
        ).stdout

    # The VM tells its power story (the controller writes it as it sees it); its BMC has the request too.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "by Redfish user admin" not in describe("vm", "demo-vm-1"):
        time.sleep(0.2)
    described = describe("vm", "demo-vm-1")
    assert "PoweredOn" in described and "by Redfish user admin" in described, described
    described = describe("-n", bns, "vmbmc", bname)
    assert "PowerOnRequested" in described and "PoweredOn" in described, described
    # SIGTERM: everything stops within 10 s and nothing the demo started survives.
    children = _children(proc.pid)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert time.monotonic() - t0 < 10
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


@pytest.mark.timeout(300)
def test_demo_logs_hold_no_secret(demo, tmp_path):
    """After real ipmitool and Redfish traffic with the generated passwords (right and wrong, Basic and
    session logins, a power-on the controller records), neither the demo's output outside its printed
    guide nor the log of any process it runs (the controller and each kbmc pod, which the pod runner logs
    to <workdir>/pods/<namespace>-<pod>/<container>.log) holds a BMC password, a ServiceAccount token, the
    emulator's admin token, a Redfish session token or a wrong password that was tried."""
    proc, doc, _startup, _guide = demo
    user = doc["bmcs"][0]["username"]
    wrong = [f"wrong-pw-{i}-xyzw" for i in range(len(doc["bmcs"]))]
    sessions: list[str] = []
    for bmc, bad in zip(doc["bmcs"], wrong, strict=True):
        ipmi = ["ipmitool", "-H", bmc["ipmi"]["host"], "-p", str(bmc["ipmi"]["port"]), "-U", user]
        for interface in ("lanplus", "lan"):
            out = subprocess.run([*ipmi, "-I", interface, "-P", bmc["password"], "power", "status"],
                                 capture_output=True, text=True, timeout=30)  # fmt: skip
            assert out.returncode == 0, out
        out = subprocess.run([*ipmi, "-I", "lan", "-P", bad, "-R", "1", "power", "status"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert out.returncode != 0, out
        system = f"/Systems/{bmc['vm'].split('/', 1)[1]}"
        with httpx.Client(base_url=bmc["redfish"], verify=False, timeout=15) as http:
            assert http.get(system, auth=(user, bad)).status_code == 401
            assert http.get(system, auth=(user, bmc["password"])).status_code == 200
            creds = {"UserName": user, "Password": bmc["password"]}
            login = http.post("/SessionService/Sessions", json=creds)
            assert login.status_code == 201, login.text
            sessions.append(login.headers["X-Auth-Token"])
            headers = {"X-Auth-Token": sessions[-1]}
            action = f"{system}/Actions/ComputerSystem.Reset"
            reset = http.post(action, json={"ResetType": "On"}, headers=headers)
            assert reset.status_code == 204, reset.text
            session = httpx.URL(bmc["redfish"]).join(login.headers["Location"])  # an absolute path
            assert http.delete(session, headers=headers).status_code == 204
    kubectl = [KUBECTL, "--kubeconfig", doc["kubeconfig"]]

    def recorded(bmc: dict) -> bool:  # the controller saw the power-on and wrote it down
        ns, name = bmc["bmc"].split("/", 1)
        query = "jsonpath={.status.powerHistory[*].to}"
        out = subprocess.run([*kubectl, "-n", ns, "get", "vmbmc", name, "-o", query],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        return "On" in out.stdout.split()

    for bmc in doc["bmcs"]:
        wait_until(lambda bmc=bmc: recorded(bmc), 60, f"the power-on of {bmc['vm']} in its power history")
    work = tmp_path / "work"
    passwords = [b["password"] for b in doc["bmcs"]]
    tokens = [*kubeconfig_tokens(doc["kubeconfig"]), *kubeconfig_tokens_under(work / "pods")]
    assert len(tokens) >= 1 + 1 + len(doc["bmcs"]), tokens  # admin, controller and every kbmc pod
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    output = (tmp_path / "demo.log").read_text()  # start_demo's: all the demo printed
    logs = sorted(work.rglob("*.log"))
    assert [p.name for p in logs].count("kbmc.log") >= len(doc["bmcs"]) and any(
        p.name == "controller.log" for p in logs
    ), logs
    for log in logs:
        if log.name == "kbmc.log":  # the traffic reached each pod's log
            assert "login failed" in log.read_text() and "ipmi request" in log.read_text(), log
    assert " INFO vmbmc." in outside_guide(output), output  # its own log lines (--verbose) are there to scan
    never = [*tokens, *sessions, *wrong]
    assert leaks(output, never, user) == [], "a token or wrong password in the demo's output"
    assert leaks(outside_guide(output), passwords, user) == [], "a password in the demo's log lines"
    assert file_leaks(logs, [*passwords, *never], user) == {}
