"""ipmitool (lan, lanplus, -C 3, -C 17) against the real `vmbmc kbmc` process and the emulated KubeVirt:
the command lines Ironic and Tinkerbell's bmclib run, and what they read back."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kbmc_process import KbmcProcess
from machine_cluster import Cluster

from vmbmc_devcluster.testing.waiting import wait_until

INTERFACES = [("lan", ()), ("lanplus", ()), ("lanplus", ("-C", "3")), ("lanplus", ("-C", "17"))]


def power(kbmc: KbmcProcess, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return kbmc.ipmitool("power", *args, **kw)


def set_power(kbmc: KbmcProcess, cluster: Cluster, state: str) -> None:
    """Drive the VM to on/off through IPMI and wait until the BMC reports it."""
    out = power(kbmc, state)
    assert out.returncode == 0, out.stderr
    wait_until(lambda: f"is {state}" in power(kbmc, "status").stdout, what=f"power {state}")


@pytest.mark.parametrize(("interface", "extra"), INTERFACES, ids=["lan", "lanplus", "C3", "C17"])
def test_power_status_on_every_interface(kbmc: KbmcProcess, interface: str, extra: tuple[str, ...]) -> None:
    out = power(kbmc, "status", interface=interface, extra=extra)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("Chassis Power is off", "Chassis Power is on")


def test_power_on_off_is_recorded_once(kbmc: KbmcProcess, cluster: Cluster) -> None:
    set_power(kbmc, cluster, "off")
    out = power(kbmc, "on")
    assert out.stdout.strip() == "Chassis Power Control: Up/On"
    wait_until(lambda: (cluster.vmi("ipmi-vm") or {}).get("status", {}).get("phase") == "Running", what="VMI")
    assert "Chassis Power is on" in power(kbmc, "status").stdout
    reqs = (cluster.bmc("ipmi-bmc") or {}).get("status", {}).get("requests", [])
    ons = [r for r in reqs if r["action"] == "on"]
    assert ons, reqs
    last = ons[-1]
    assert (last["protocol"], last["user"], last["client"]) == ("ipmi", "admin", "127.0.0.1")
    assert last["effect"] in ("pending", "called")
    reasons = [e["reason"] for e in cluster.events_for("ipmi-bmc")]
    assert "PowerOnRequested" in reasons
    # A second `power on` while on: success, no call.
    assert power(kbmc, "on").stdout.strip() == "Chassis Power Control: Up/On"
    out = power(kbmc, "off")
    assert out.stdout.strip() == "Chassis Power Control: Down/Off"
    wait_until(lambda: cluster.vmi("ipmi-vm") is None, what="VMI gone")
    assert "Chassis Power is off" in power(kbmc, "status").stdout


def test_cycle_reset_soft_diag(kbmc: KbmcProcess, cluster: Cluster) -> None:
    set_power(kbmc, cluster, "off")
    # IPMI may refuse cycle/reset on a powered-off chassis, and we do (D5h, not supported in present state).
    out = power(kbmc, "cycle")
    assert "not supported in present state" in out.stderr, out
    out = power(kbmc, "reset")
    assert "not supported in present state" in out.stderr, out
    set_power(kbmc, cluster, "on")
    uid = cluster.vmi("ipmi-vm")["metadata"]["uid"]
    assert power(kbmc, "cycle").stdout.strip() == "Chassis Power Control: Cycle"
    wait_until(
        lambda: (
            (v := cluster.vmi("ipmi-vm"))
            and v["metadata"]["uid"] != uid
            and v["status"].get("phase") == "Running"
        ),
        what="a new VMI after cycle",
    )
    out = power(kbmc, "diag")  # no NMI in KubeVirt: refused, never faked
    assert "Invalid data field" in out.stderr, out
    wait_until(lambda: "Chassis Power Control: Soft" in power(kbmc, "soft").stdout, what="soft accepted")
    wait_until(lambda: cluster.vmi("ipmi-vm") is None, timeout=30, what="guest shut down")


def bootparam5(kbmc: KbmcProcess) -> str:
    out = kbmc.ipmitool("chassis", "bootparam", "get", "5")
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_ironic_uefi_boot_commands(kbmc: KbmcProcess, cluster: Cluster) -> None:
    # Ironic: disable the 60 s boot-flag timeout, then raw Set Boot Options with EFI + persistent.
    assert kbmc.ipmitool("raw", "0x00", "0x08", "0x03", "0x08").returncode == 0
    out = kbmc.ipmitool("raw", "0x00", "0x08", "0x05", "0xe0", "0x04", "0x00", "0x00", "0x00")
    assert out.returncode == 0, out.stderr
    shown = wait_until(lambda: (s := bootparam5(kbmc)) and "Force PXE" in s and s, what="pxe shown")
    assert "Options apply to all future boots" in shown
    assert "BIOS EFI boot" in shown
    vm = wait_until(
        lambda: (
            (v := cluster.vm("ipmi-vm"))
            and "efi" in (v["spec"]["template"]["spec"]["domain"].get("firmware") or {}).get("bootloader", {})
            and v
        ),
        what="EFI firmware in the VM",
    )
    iface = vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0]
    assert iface.get("bootOrder") == 1
    status = cluster.bmc("ipmi-bmc")["status"]["bootOverride"]
    assert (status["target"], status["enabled"], status["mode"]) == ("Pxe", "Continuous", "UEFI")
    # Ironic's `chassis bootparam get 5` check of 0x00 0x08 0x03 reads back too.
    out = kbmc.ipmitool("chassis", "bootparam", "get", "3")
    assert out.returncode == 0 and "Boot parameter data: 08" in out.stdout, out


def test_bootdev_legacy_once_and_persistent(kbmc: KbmcProcess, cluster: Cluster) -> None:
    out = kbmc.ipmitool("chassis", "bootdev", "disk")
    assert out.stdout.strip() == "Set Boot Device to disk", out
    shown = wait_until(lambda: (s := bootparam5(kbmc)) and "Hard-Drive" in s and s, what="disk shown")
    assert "Options apply to only next boot" in shown
    out = kbmc.ipmitool("chassis", "bootdev", "cdrom", "options=persistent")
    assert out.stdout.strip() == "Set Boot Device to cdrom", out
    shown = wait_until(lambda: (s := bootparam5(kbmc)) and "CD/DVD" in s and s, what="cdrom shown")
    assert "Options apply to all future boots" in shown
    # BIOS setup has no KubeVirt meaning: refused, and ipmitool says so (it still exits 0).
    out = kbmc.ipmitool("chassis", "bootdev", "bios")
    assert "Invalid data field" in out.stderr, out
    assert "CD/DVD" in bootparam5(kbmc)
    out = kbmc.ipmitool("chassis", "bootdev", "none")
    assert out.returncode == 0
    shown = wait_until(lambda: (s := bootparam5(kbmc)) and "No override" in s and s, what="override cleared")
    assert "Boot Flag Invalid" in shown


def test_bmclib_command_lines(kbmc: KbmcProcess, cluster: Cluster) -> None:
    """bmc-toolbox/bmclib: -E (IPMITOOL_PASSWORD) -N 5 -C 3, success judged by stdout strings."""
    env = dict(os.environ, IPMITOOL_PASSWORD=kbmc.password)

    def bmclib(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [
            "ipmitool",
            "-I",
            "lanplus",
            "-U",
            kbmc.user,
            "-E",
            "-N",
            "5",
            "-H",
            kbmc.host,
            "-p",
            str(kbmc.port),
            "-C",
            "3",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

    out = bmclib("chassis", "power", "status")
    assert out.stdout.startswith("Chassis Power is "), out
    out = bmclib("chassis", "bootdev", "pxe", "options=efiboot")
    assert out.stdout.strip() == "Set Boot Device to pxe", out
    assert "BIOS EFI boot" in bootparam5(kbmc)
    assert bmclib("sel", "list").returncode == 0
    out = bmclib("mc", "reset", "cold")
    assert "Sent cold reset command to MC" in out.stdout, out
    time.sleep(0.5)  # the BMC drops its sessions after answering; new ones work at once
    assert bmclib("chassis", "power", "status").stdout.startswith("Chassis Power is ")


def test_inventory_commands(kbmc: KbmcProcess, cluster: Cluster) -> None:
    vm = cluster.vm("ipmi-vm")
    out = kbmc.ipmitool("mc", "info")
    assert "IPMI Version              : 2.0" in out.stdout and "Chassis Device" in out.stdout, out
    out = kbmc.ipmitool("mc", "guid")
    assert vm["metadata"]["uid"] in out.stdout, out
    out = kbmc.ipmitool("fru", "print")
    assert out.returncode == 0, out.stderr
    assert "Product Name          : ipmi-vm" in out.stdout
    assert f"Product Serial        : {vm['metadata']['uid']}" in out.stdout
    assert "Product Asset Tag     : default/ipmi-vm" in out.stdout
    assert "Selftest: passed" in kbmc.ipmitool("mc", "selftest").stdout
    out = kbmc.ipmitool("channel", "getciphers", "ipmi")
    ids = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert ids == ["3", "17"], out.stdout
    out = kbmc.ipmitool("chassis", "status")
    assert "System Power" in out.stdout and "Power Restore Policy : always-off" in out.stdout, out


def test_unknown_commands_get_invalid_command(kbmc: KbmcProcess) -> None:
    out = kbmc.ipmitool("raw", "0x30", "0x01")
    assert "Invalid command" in out.stderr, out
    out = kbmc.ipmitool("lan", "print")
    assert out.returncode != 0
    assert power(kbmc, "status").returncode == 0  # and the BMC carries on


def test_privilege_levels(kbmc: KbmcProcess) -> None:
    out = power(kbmc, "status", extra=("-L", "USER"))
    assert out.stdout.startswith("Chassis Power is"), out
    out = power(kbmc, "on", extra=("-L", "USER"))
    assert "Insufficient privilege level" in out.stderr, out
    out = kbmc.ipmitool("chassis", "bootdev", "pxe", extra=("-L", "USER"))
    assert "Insufficient privilege level" in out.stderr, out
    out = power(kbmc, "status", extra=("-L", "OPERATOR"))
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("interface", ["lan", "lanplus"])
def test_wrong_credentials_fail_without_hanging(kbmc: KbmcProcess, interface: str) -> None:
    # A BMC that stays silent makes ipmitool retry for 10-14 s; ours answers, so 5 s is plenty.
    out = power(kbmc, "status", interface=interface, password="wrong-password", timeout=5)
    assert out.returncode != 0 and "Unable to establish" in out.stderr, out
    out = power(kbmc, "status", interface=interface, user="nobody", timeout=5)
    assert out.returncode != 0 and "Unable to establish" in out.stderr, out
    # Correct credentials are never refused, however many failures came before
    # (the lockout delays only failures).
    for _ in range(6):
        power(kbmc, "status", interface=interface, password="wrong-password", timeout=5)
    assert power(kbmc, "status", interface=interface).returncode == 0
    assert "wrong-password" not in kbmc.logs() and kbmc.password not in kbmc.logs()


def test_cipher_suite_zero_and_null_user_refused(kbmc: KbmcProcess) -> None:
    out = power(kbmc, "status", extra=("-C", "0"), timeout=5)
    assert "no matching cipher suite" in out.stderr, out
    out = power(kbmc, "status", extra=("-C", "1"), timeout=5)
    assert "no matching cipher suite" in out.stderr, out
    out = power(kbmc, "status", user="", timeout=5)
    assert out.returncode != 0


def test_twenty_concurrent_clients(kbmc: KbmcProcess) -> None:
    jobs = [("lanplus", ()), ("lan", ()), ("lanplus", ("-C", "3")), ("lanplus", ("-C", "17"))] * 5
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(lambda j: power(kbmc, "status", interface=j[0], extra=j[1]), jobs))
    bad = [r for r in results if r.returncode != 0 or not r.stdout.startswith("Chassis Power is")]
    assert not bad, bad[:3]


def test_request_log_lines(kbmc: KbmcProcess) -> None:
    power(kbmc, "status")
    lines = [line for line in kbmc.logs().splitlines() if '"ipmi request"' in line]
    assert any(
        '"command": "Get Chassis Status"' in line and '"client": "127.0.0.1"' in line for line in lines
    )
    assert all('"user": "admin"' in line for line in lines)
