"""Every view of the power history, in the demo's topology (the real controller, each kbmc pod a real
process under its own Roles): a power-on over IPMI and a stop through the Kubernetes API (kubectl) show in
`ipmitool sel elist`, FreeIPMI's `ipmi-sel` and the Redfish log entries with their causes, and as the
Kubernetes Events; the SEL's record ids survive a kbmc killed with SIGKILL and a replaced pod; a clear,
over IPMI or Redfish, is recorded and hides the earlier entries from the log views, never the Events."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))

from history_topology import TENANT, Topology, topology

from vmbmc_devcluster.testing.waiting import wait_until

LOG = "/redfish/v1/Systems/{vm}/LogServices/SEL"


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    with topology(tmp_path_factory.mktemp("history-views"), 240) as found:
        yield found


def rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")] for line in text.splitlines() if "|" in line]


def ipmi_sel(topo: Topology, bmc: str, *args: str) -> list[list[str]]:
    ip, user, password, _ = topo.credentials(bmc)
    cache = topo.tmp / "sdr-cache"
    cache.mkdir(exist_ok=True)
    cmd = ["ipmi-sel", "-D", "LAN_2_0", "-h", f"{ip}:10623", "-u", user, "-p", password,
           "--sdr-cache-directory", str(cache), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return rows(out.stdout)[1:]


def redfish_entries(topo: Topology, bmc: str, vm: str) -> list[dict]:
    _, user, password, url = topo.credentials(bmc)
    with httpx.Client(base_url=url, auth=(user, password), verify=False, timeout=30) as http:
        r = http.get(LOG.format(vm=vm) + "/Entries")
        assert r.status_code == 200, r.text
        return list(r.json()["Members"])


def test_every_view_shows_the_history_and_a_clear(topo: Topology) -> None:
    vm = topo.create_vm(41)
    bmc = f"{TENANT}-{vm}"
    assert topo.ipmitool(bmc, "power", "on") == "Chassis Power Control: Up/On"
    (on,) = topo.wait_entries(bmc, "PoweredOn", 1)
    halted = '{"spec":{"runStrategy":"Halted"}}'
    topo.kubectl("patch", "vm", vm, "-n", TENANT, "--type", "merge", "-p", halted)  # kubectl stop
    (off,) = topo.wait_entries(bmc, "PoweredOff", 1)  # its Event exists, as PoweredOn's does
    assert re.fullmatch(r"by IPMI user admin from 127\.0\.0\.1 \(request [0-9a-f]{16}\)", on["message"])
    assert off["message"] == "outside the BMC: stopped through the KubeVirt API"

    # ipmitool: both transitions, who caused them, the ids' first digits as record ids.
    elist = wait_until(lambda: len(r := rows(topo.ipmitool(bmc, "sel", "elist"))) == 2 and r, what="SEL")
    # ipmitool prints record ids in hex without leading zeros
    assert [int(r[0], 16) for r in elist] == [int(on["id"][:4], 16), int(off["id"][:4], 16)]
    assert [r[3:] for r in elist] == [
        ["System ACPI Power State IPMI Power", "S0/G0: working", "Asserted"],
        ["System ACPI Power State External Power", "S5/G2: soft-off", "Asserted"],
    ]
    # FreeIPMI: the same, named from the SDR repository.
    assert [(r[0], r[3], r[5].split(" ;")[0]) for r in ipmi_sel(topo, bmc)] == [
        (str(int(on["id"][:4], 16)), "IPMI Power", "S0/G0"),
        (str(int(off["id"][:4], 16)), "External Power", "S5/G2"),
    ]
    # Redfish: the entries, with the full causes.
    first, second = redfish_entries(topo, bmc, vm)
    assert (first["Id"], second["Id"]) == (on["id"], off["id"])
    assert first["MessageId"] == "ResourceEvent.1.4.3.ResourcePoweredOn"
    assert first["Message"] == f"The resource '{vm}' has powered on: {on['message']}."
    assert second["Message"] == f"The resource '{vm}' has powered off: {off['message']}."

    # The kbmc killed, then its pod replaced: the same SEL.
    topo.restart_kbmc(bmc)
    assert rows(topo.ipmitool(bmc, "sel", "elist")) == elist
    topo.replace_pod(bmc)
    assert rows(topo.ipmitool(bmc, "sel", "elist")) == elist

    # A clear over IPMI: a request of the BMC, its Events, and a clear entry in place of the rest.
    assert "Clearing SEL" in topo.ipmitool(bmc, "sel", "clear")
    wait_until(lambda: [r for r in topo.bmc(bmc)["status"].get("requests") or []
                        if r["action"] == "clear_log" and r["effect"] != "pending"],
               what="the clear's record settled")  # written after the IPMI answer
    status = topo.bmc(bmc)["status"]
    cleared = status["logClearedAt"]
    (clear_request,) = [r for r in status["requests"] if r["action"] == "clear_log"]
    assert clear_request["id"] == cleared["requestId"] and clear_request["effect"] == "called"
    reasons = [e["reason"] for e in topo.bmc_events(bmc)]
    assert {"ClearLogRequested", "LogCleared", "PoweredOn", "PoweredOff"} <= set(reasons)  # Events stay
    assert [h["id"] for h in topo.history(bmc)] == [on["id"], off["id"]]  # and so does the history
    ((rid, *_, sensor, event, _),) = rows(topo.ipmitool(bmc, "sel", "elist"))
    clear_id = int(cleared["requestId"][:4], 16)
    assert (int(rid, 16), sensor, event) == (clear_id, "Event Logging Disabled IPMI Log",
                                    "Log area reset/cleared")
    (entry,) = redfish_entries(topo, bmc, vm)
    assert entry["MessageId"] == "LogService.1.1.0.LogCleared"
    by = f"by IPMI user admin from 127.0.0.1 (request {cleared['requestId']})"
    assert entry["Message"] == f"Log 'SEL' was cleared: {by}."

    # A clear over Redfish (ClearLog) replaces it, named as a Redfish client's.
    _, user, password, url = topo.credentials(bmc)
    with httpx.Client(base_url=url, auth=(user, password), verify=False, timeout=30) as http:
        r = http.post(LOG.format(vm=vm) + "/Actions/LogService.ClearLog", json={})
        assert r.status_code == 204, r.text
    (row,) = ipmi_sel(topo, bmc)
    assert row[3:5] == ["Redfish Log", "Event Logging Disabled"]
    assert topo.bmc(bmc)["status"]["logClearedAt"]["requester"].startswith("Redfish user admin from ")
