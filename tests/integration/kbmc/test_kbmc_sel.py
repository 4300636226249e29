"""The SEL and the SDR repository with real clients (ipmitool, FreeIPMI's ipmi-sel) against the real
`vmbmc kbmc` and the emulator. The history is written into the BMC's status as the controller writes it
(the whole chain, with the real controller, is tests/integration/demo/test_history_views_e2e.py)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from kbmc_process import ServedBmc, kbmc_kubeconfig, serve_new_bmc, start_kbmc
from machine_cluster import Cluster

from tests.history_entries import HISTORY
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.waiting import wait_until


@pytest.fixture
def bmc(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> Iterator[ServedBmc]:
    served = serve_new_bmc(emu, cluster, tmp_path, "sel")
    cluster.patch_bmc_status(served.name, {"powerHistory": HISTORY})  # as the controller writes it
    yield served
    served.kbmc.stop()


def sel(bmc: ServedBmc, *args: str, level: str = "ADMINISTRATOR") -> str:
    out = bmc.kbmc.ipmitool("-L", level, "sel", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def ipmi_sel(bmc: ServedBmc, *args: str) -> str:
    cache = bmc.workdir / "sdr-cache"
    cache.mkdir(exist_ok=True)
    out = bmc.kbmc.freeipmi("ipmi-sel", "--sdr-cache-directory", str(cache), *args)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")] for line in text.splitlines() if "|" in line]


def test_ipmitool_lists_and_names_every_entry(bmc: ServedBmc) -> None:
    wait_until(lambda: "Entries          : 4" in sel(bmc, "info"), what="the history in the SEL")
    info = sel(bmc, "info")
    assert "Last Add Time    : 06/02/25 10:07:00 UTC" in info and "Overflow         : false" in info
    assert [r[0] for r in rows(sel(bmc, "list"))] == ["3f2a", "b00b", "c0de", "d00d"]
    assert [r[3:] for r in rows(sel(bmc, "elist"))] == [
        ["System ACPI Power State IPMI Power", "S0/G0: working", "Asserted"],
        ["System ACPI Power State External Power", "S5/G2: soft-off", "Asserted"],
        ["System ACPI Power State External Power", "S0/G0: working", "Asserted"],
        ["System Boot Initiated Redfish Restart", "System Restart", "Asserted"],
    ]
    one = sel(bmc, "get", "0xd00d")
    assert "Generator ID          : 0083" in one and "Event Data (RAW)      : a7d00d" in one
    assert "Sensor ID              : Redfish Restart (0x2)" in one
    assert "UTC" in sel(bmc, "time", "get")


def test_freeipmi_reads_the_sdr_repository_and_the_sel(bmc: ServedBmc) -> None:
    wait_until(lambda: "Entries          : 4" in sel(bmc, "info"), what="the history in the SEL")
    table = rows(ipmi_sel(bmc))
    assert table[0] == ["ID", "Date", "Time", "Name", "Type", "Event"]
    assert [r[0] for r in table[1:]] == [str(int(h["id"][:4], 16)) for h in HISTORY]
    assert [r[3:5] for r in table[1:]] == [
        ["IPMI Power", "System ACPI Power State"],
        ["External Power", "System ACPI Power State"],
        ["External Power", "System ACPI Power State"],
        ["Redfish Restart", "System Boot Initiated"],
    ]
    assert table[1][5].startswith("S0/G0 ; OEM Event Data2 code = 3Fh ; OEM Event Data3 code = 2Ah")
    # A second run reads the SDR cache the first one made: the repository's timestamps did not change.
    assert rows(ipmi_sel(bmc)) == table


def test_record_ids_stay_after_the_kbmc_is_killed(bmc: ServedBmc) -> None:
    wait_until(lambda: "Entries          : 4" in sel(bmc, "info"), what="the history in the SEL")
    before = sel(bmc, "elist")
    bmc.kbmc.proc.send_signal(signal.SIGKILL)
    bmc.kbmc.proc.wait(10)
    bmc.kbmc = start_kbmc(bmc.kubeconfig, bmc.workdir, "--bmc", f"default/{bmc.name}", port=bmc.kbmc.port)
    assert sel(bmc, "elist") == before


def test_sel_clear_is_a_recorded_request_and_hides_earlier_entries(bmc: ServedBmc, cluster: Cluster) -> None:
    wait_until(lambda: "Entries          : 4" in sel(bmc, "info"), what="the history in the SEL")
    assert "Clearing SEL" in sel(bmc, "clear", level="OPERATOR")

    def settled() -> bool:  # the record's effect and the Events are written after the answer
        st = (cluster.bmc(bmc.name) or {}).get("status") or {}
        done = [r for r in st.get("requests") or []
                if r["action"] == "clear_log" and r["effect"] != "pending"]
        return bool(done) and {"ClearLogRequested", "LogCleared"} <= {
            e["reason"] for e in cluster.events_for(bmc.name)}

    wait_until(settled, what="the clear's record and Events")
    status = (cluster.bmc(bmc.name) or {})["status"]
    cleared = status["logClearedAt"]
    (record,) = [r for r in status["requests"] if r["action"] == "clear_log"]
    assert record["id"] == cleared["requestId"] and record["effect"] == "called"
    assert (record["protocol"], record["user"], record["client"]) == ("ipmi", "admin", "127.0.0.1")
    assert cleared["requester"] == "IPMI user admin from 127.0.0.1"
    events = {e["reason"]: e["message"] for e in cluster.events_for(bmc.name)}
    by = f"by IPMI user admin from 127.0.0.1 (request {record['id']})"
    assert events["ClearLogRequested"].startswith(f"log clear requested {by}")
    assert events["LogCleared"].startswith(f"log cleared {by}")
    (only,) = rows(sel(bmc, "elist"))
    # ipmitool prints the record id in hex without leading zeros
    assert int(only[0], 16) == int(record["id"][:4], 16) and only[3:] == [
        "Event Logging Disabled IPMI Log", "Log area reset/cleared", "Asserted"
    ]
    assert status["powerHistory"] == HISTORY  # the history itself stays, as the Kubernetes Events do
    info = sel(bmc, "info")
    assert "Entries          : 1" in info and "Last Del Time    : Not Available" not in info

    # FreeIPMI's clear: a second clear, recorded the same way; its entry replaces the first one's.
    assert ipmi_sel(bmc, "--clear") == ""
    wait_until(lambda: (cluster.bmc(bmc.name) or {})["status"]["logClearedAt"]["requestId"] != record["id"],
               what="the second clear recorded")
    second = (cluster.bmc(bmc.name) or {})["status"]["logClearedAt"]
    assert second["requestId"] != record["id"]
    (row,) = rows(ipmi_sel(bmc))[1:]
    assert row[3:5] == ["IPMI Log", "Event Logging Disabled"]
    assert row[0] == str(int(second["requestId"][:4], 16))


def test_sel_clear_needs_operator(bmc: ServedBmc, cluster: Cluster) -> None:
    assert rows(sel(bmc, "list", level="USER"))  # reading needs only User
    out = bmc.kbmc.ipmitool("-L", "USER", "sel", "clear")
    assert "Insufficient privilege level" in out.stdout + out.stderr
    assert "logClearedAt" not in (cluster.bmc(bmc.name) or {})["status"]


def test_overflow_once_the_history_is_full(bmc: ServedBmc, emu: EmulatorThread, cluster: Cluster) -> None:
    full = [
        {**HISTORY[0], "id": f"{i:04x}0000000000aa", "time": f"2025-06-03T10:{i:02d}:00Z"} for i in range(20)
    ]
    cluster.patch_bmc_status(bmc.name, {"powerHistory": full})
    wait_until(lambda: "Overflow         : true" in sel(bmc, "info"), what="the overflow flag")
    assert "Free Space       : 0 bytes" in sel(bmc, "info")


def test_a_standalone_bmc_has_only_its_clears(
    emu: EmulatorThread, cluster: Cluster, tmp_path: Path
) -> None:
    """`--vm`: no controller records the VM's transitions; the SEL holds the last clear, which is kept in
    a VM annotation."""
    cluster.create_vm("standalone-sel")
    kubeconfig = kbmc_kubeconfig(emu, tmp_path, "default", "standalone-sel-bmc", "standalone-sel")
    kbmc = start_kbmc(kubeconfig, tmp_path, "--vm", "default/standalone-sel")
    try:
        served = ServedBmc("standalone-sel", "standalone-sel", kubeconfig, tmp_path, kbmc)
        assert "Entries          : 0" in sel(served, "info")
        empty = kbmc.ipmitool("sel", "list")
        assert empty.returncode == 0 and "SEL has no entries" in empty.stdout + empty.stderr
        sel(served, "clear")
        annotation = (cluster.vm("standalone-sel") or {})["metadata"]["annotations"]
        cleared = json.loads(annotation["virtualmachinebmc.kubevirt.io/log-cleared-at"])
        ((rid, *_),) = rows(sel(served, "list"))
        assert int(rid, 16) == int(cleared["requestId"][:4], 16)  # ipmitool drops leading zeros
        reasons = {e["reason"] for e in cluster.events_for("standalone-sel")}
        assert {"ClearLogRequested", "LogCleared"} <= reasons
    finally:
        kbmc.stop()
