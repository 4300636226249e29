"""Shared kbmc mode end to end, in the demo's topology (`vmbmc demo --kbmc-mode shared --vms 50`): the
controller runs from its pod, one shared kbmc pod (a real `vmbmc kbmc --shared` process under its own
ServiceAccount's token) serves all 50 BMCs, each on its own ports as the endpoints file gives them.

- every BMC answers `ipmitool -I lanplus` and Redfish with its own password, and not with another's;
- a BMC added later is served within 5 s of the roster listing it, with no pod restart;
- a deleted one stops answering;
- each BMC's Events and power history are its own;
- the shared pod's token is refused a VM it does not serve.
"""

from __future__ import annotations

import base64
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.testing.demo_process import start_demo
from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until

SYSTEM = "virtualmachinebmc-system"
VMS = 50
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("shared")
    args = ("--kbmc-mode", "shared", "--vms", str(VMS), "--redfish", "--workdir", str(tmp / "work"))
    # the demo gives up itself after 60 s without every BMC Ready; the timeout bounds a stuck start
    demo = start_demo(tmp, *args, timeout=150)
    try:
        yield demo.endpoints, tmp / "work"
    finally:
        demo.stop(timeout=30)


def ipmitool(host: str, port: int, user: str, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["ipmitool", "-I", "lanplus", "-H", host, "-p", str(port), "-U", user, "-P", password]
    # one retry, short timeouts: a BMC that is not there fails fast
    return subprocess.run([*cmd, "-R", "1", "-N", "1", *args], capture_output=True, text=True, timeout=30)


def kubectl(kubeconfig: str | Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


def get_json(kubeconfig: str, *args: str) -> dict[str, Any]:
    out = kubectl(kubeconfig, *args, "-o", "json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def shared_pod(kubeconfig: str) -> dict[str, Any]:
    pods = get_json(kubeconfig, "-n", SYSTEM, "get", "pods", "-l", "app.kubernetes.io/component=kbmc-shared")
    (pod,) = pods["items"]
    return dict(pod)


def test_every_bmc_answers_on_its_own_ports_with_its_own_password(demo: Any) -> None:
    doc, _ = demo
    bmcs = doc["bmcs"]
    assert len(bmcs) == VMS
    hosts = {b["ipmi"]["host"] for b in bmcs}
    assert len(hosts) == 1, hosts  # one shared pod
    ports = [b["ipmi"]["port"] for b in bmcs]
    assert len(set(ports)) == VMS, ports  # each its own IPMI port
    assert len({b["redfish"] for b in bmcs}) == VMS

    def check(i: int) -> None:
        b, other = bmcs[i], bmcs[(i + 1) % VMS]
        host, port, user = b["ipmi"]["host"], b["ipmi"]["port"], b["username"]
        assert b["password"] != other["password"]
        ok = ipmitool(host, port, user, b["password"], "power", "status")
        assert ok.stdout.startswith("Chassis Power is "), (b["vm"], ok.stdout, ok.stderr)
        bad = ipmitool(host, port, user, other["password"], "power", "status")
        assert bad.returncode != 0 and "Chassis Power" not in bad.stdout, (b["vm"], bad.stdout)
        system = f"{b['redfish']}/Systems/{b['vm'].split('/', 1)[1]}"
        with httpx.Client(verify=False, timeout=20) as http:
            good = http.get(system, auth=(user, b["password"]))
            assert good.status_code == 200 and good.json()["Id"] == b["vm"].split("/", 1)[1], good.text
            refused = http.get(system, auth=(user, other["password"]))
            assert refused.status_code == 401, refused.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check, range(VMS)))


def test_events_and_history_are_each_bmcs_own(demo: Any) -> None:
    doc, _ = demo
    kc = doc["kubeconfig"]
    first, second = doc["bmcs"][0], doc["bmcs"][1]
    host, port = first["ipmi"]["host"], first["ipmi"]["port"]
    on = ipmitool(host, port, first["username"], first["password"], "power", "on")
    assert on.stdout.strip() == "Chassis Power Control: Up/On", on
    name1, name2 = first["bmc"].split("/", 1)[1], second["bmc"].split("/", 1)[1]

    def history(name: str) -> list[dict[str, Any]]:
        bmc = get_json(kc, "-n", SYSTEM, "get", "vmbmc", name)
        return list((bmc.get("status") or {}).get("powerHistory") or [])

    entries = wait_until(lambda: [h for h in history(name1) if h.get("to") == "On"], timeout=30, what="On")
    assert any("IPMI" in json.dumps(h) for h in entries), entries
    ids = {h["id"] for h in entries}
    assert not ids & {h["id"] for h in history(name2)}
    assert not [h for h in history(name2) if h.get("to") == "On"]

    def events(name: str) -> list[dict[str, Any]]:
        sel = f"involvedObject.name={name},involvedObject.kind=VirtualMachineBMC"
        return list(get_json(kc, "-n", SYSTEM, "get", "events", "--field-selector", sel)["items"])

    mine = wait_until(
        lambda: [e for e in events(name1) if e.get("reason") == "PoweredOn"], timeout=30, what="PoweredOn"
    )
    assert all(e["involvedObject"]["name"] == name1 for e in mine)
    assert "IPMI user" in mine[0]["message"], mine
    assert not [e for e in events(name2) if e.get("reason") == "PoweredOn"]
    # and the power-off goes back, so other tests see the sample as it was
    ipmitool(host, port, first["username"], first["password"], "power", "off")


def test_added_bmc_served_within_5s_without_restart_and_deleted_one_stops(demo: Any) -> None:
    doc, _ = demo
    kc = doc["kubeconfig"]
    before = shared_pod(kc)
    vm = sample_vm(VMS + 1)
    created = kubectl(kc, "create", "--validate=false", "-f", "-", stdin=yaml.safe_dump(vm))
    assert created.returncode == 0, created.stderr
    name = f"default-demo-vm-{VMS + 1}"

    def listed() -> dict[str, Any] | None:
        cm = get_json(kc, "-n", SYSTEM, "get", "configmap", "vmbmc-kbmc-shared")
        text = (cm.get("data") or {}).get(name)
        return json.loads(text) if text else None

    entry = wait_until(listed, timeout=60, what="the new BMC in the roster")

    def bmc_status() -> dict[str, Any]:
        return dict(get_json(kc, "-n", SYSTEM, "get", "vmbmc", name).get("status") or {})

    status = wait_until(lambda: (s := bmc_status()).get("credentialsSecret") and s, timeout=30, what="Secret")
    secret = get_json(kc, "-n", SYSTEM, "get", "secret", status["credentialsSecret"])
    user = base64.b64decode(secret["data"]["username"]).decode()
    password = base64.b64decode(secret["data"]["password"]).decode()
    host = doc["bmcs"][0]["ipmi"]["host"]
    port = int(entry["ipmiPort"])

    def answers() -> bool:
        return "Chassis Power is" in ipmitool(host, port, user, password, "power", "status").stdout

    wait_until(answers, timeout=5, what="the added BMC answering ipmitool (5 s after the roster lists it)")
    ready = wait_until(lambda: (s := bmc_status()).get("ready") and s, timeout=30, what="the added BMC Ready")
    assert ready["serving"] and ready["endpoints"]["ipmiTargetPort"] == port
    after = shared_pod(kc)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # the same pod, not restarted
    assert all(not cs.get("restartCount") for cs in after["status"].get("containerStatuses") or [])

    deleted = kubectl(kc, "-n", "default", "delete", "vm", vm["metadata"]["name"])
    assert deleted.returncode == 0, deleted.stderr
    wait_until(lambda: not answers(), timeout=60, what="the deleted BMC no longer answering")
    wait_until(lambda: listed() is None, timeout=30, what="the deleted BMC gone from the roster")
    # the others still answer
    b = doc["bmcs"][2]
    ok = ipmitool(b["ipmi"]["host"], b["ipmi"]["port"], b["username"], b["password"], "power", "status")
    assert "Chassis Power is" in ok.stdout, ok


def test_shared_token_refused_a_vm_it_does_not_serve(demo: Any) -> None:
    doc, work = demo
    kc = doc["kubeconfig"]
    pod = shared_pod(kc)
    pod_kc = work / "pods" / f"{SYSTEM}-{pod['metadata']['name']}" / "kubeconfig"
    assert pod_kc.exists()
    outsider = sample_vm(99)
    outsider["metadata"]["name"] = "outsider"
    outsider["metadata"]["labels"]["virtualmachinebmc.kubevirt.io/enabled"] = "false"  # no BMC for it
    made = kubectl(kc, "create", "--validate=false", "-f", "-", stdin=yaml.safe_dump(outsider))
    assert made.returncode == 0, made.stderr
    served = kubectl(pod_kc, "-n", "default", "get", "vm", "demo-vm-1", "-o", "name")
    assert served.returncode == 0, served.stderr  # its own rights: a served BMC's VM, by name
    refused = kubectl(pod_kc, "-n", "default", "get", "vm", "outsider")
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused
    token = yaml.safe_load(pod_kc.read_text())["users"][0]["user"]["token"]
    server = yaml.safe_load(pod_kc.read_text())["clusters"][0]["cluster"]["server"]
    with httpx.Client(base_url=server, verify=False, timeout=10) as http:
        auth = {"Authorization": f"Bearer {token}"}
        start = http.put(
            "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/outsider/start",
            headers=auth,
            json={},
        )
        assert start.status_code == 403, start.text
        listing = http.get("/apis/kubevirt.io/v1/namespaces/default/virtualmachines", headers=auth)
        assert listing.status_code == 403, listing.text
        secrets = http.get(f"/api/v1/namespaces/{SYSTEM}/secrets", headers=auth)
        assert secrets.status_code == 403, secrets.text  # Secrets only by name, each served BMC's own
