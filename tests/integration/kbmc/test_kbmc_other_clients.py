"""FreeIPMI, ipmiutil, pyghmi's client and nmap's IPMI scripts against the real `vmbmc kbmc`; its
health endpoints and command-line errors."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from kbmc_process import VMBMC, KbmcProcess, kbmc_kubeconfig, start_kbmc
from machine_cluster import Cluster

from tests.prometheus_text import sample
from vmbmc_devcluster.emulator.harness import EmulatorThread


@pytest.mark.parametrize("driver", ["LAN_2_0", "LAN"])
def test_freeipmi(kbmc: KbmcProcess, driver: str) -> None:
    out = kbmc.freeipmi("bmc-info", "--get-device-id", driver=driver)
    assert out.returncode == 0, out.stderr
    assert "IPMI Version          : 2.0" in out.stdout and "Chassis Device        : supported" in out.stdout
    out = kbmc.freeipmi("ipmipower", "--stat", driver=driver)
    assert out.stdout.strip() in ("127.0.0.1: on", "127.0.0.1: off"), out
    out = kbmc.freeipmi("ipmi-chassis", "--get-chassis-status", driver=driver)
    assert out.returncode == 0 and "System Power" in out.stdout, out
    out = kbmc.freeipmi("ipmi-chassis", "--get-boot-flags", driver=driver)
    assert out.returncode == 0 and "Boot device selector" in out.stdout, out


def test_freeipmi_cipher_17_and_guid(kbmc: KbmcProcess, cluster: Cluster) -> None:
    out = kbmc.freeipmi("ipmipower", "-I", "17", "--stat")
    assert out.stdout.strip() in ("127.0.0.1: on", "127.0.0.1: off"), out
    out = kbmc.freeipmi("bmc-info", "--get-system-guid")
    assert cluster.vm("ipmi-vm")["metadata"]["uid"] in out.stdout.lower(), out
    out = kbmc.freeipmi("bmc-info", "--get-device-guid")
    expected = str(uuid.uuid5(uuid.NAMESPACE_URL, "vmbmc:default/ipmi-bmc"))
    assert out.returncode == 0 and out.stdout.strip() == expected, out


def test_pyghmi_client(kbmc: KbmcProcess) -> None:
    from pyghmi.ipmi import command

    ipmi = command.Command(bmc=kbmc.host, userid=kbmc.user, password=kbmc.password, port=kbmc.port)
    try:
        assert ipmi.get_power()["powerstate"] in ("on", "off")
        ipmi.set_bootdev("network", persist=True, uefiboot=True)
        boot = ipmi.get_bootdev()
        assert (boot["bootdev"], boot["persistent"], boot["uefimode"]) == ("network", True, True)
    finally:
        ipmi.ipmi_session.logout()


def _can_bind_623(host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 623))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def kbmc623(emu: EmulatorThread, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory):
    """A standalone kbmc on UDP 623 of a loopback address of its own: ipmiutil has no port option
    and nmap's IPMI scripts only look at 623. Needs root, as CI has."""
    host = "127.0.0.77"
    if not _can_bind_623(host):
        pytest.skip("UDP 623 is not bindable here (needs root, as in CI)")
    cluster.create_vm("port623-vm")
    work = tmp_path_factory.mktemp("k623")
    kubeconfig = kbmc_kubeconfig(emu, work, "default", "port623", "port623-vm")
    kp = start_kbmc(kubeconfig, work, "--vm", "default/port623-vm", host=host, port=623)
    yield kp
    kp.stop()


def test_ipmiutil(kbmc623: KbmcProcess) -> None:
    kp, host = kbmc623, kbmc623.host
    if shutil.which("ipmiutil") is None:
        pytest.skip("ipmiutil is not installed (.ci/run installs it)")
    base = ["-N", host, "-U", kp.user, "-P", kp.password]
    out = subprocess.run(
        ["ipmiutil", "health", *base, "-F", "lan2"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "chassis_power       = off" in out.stdout, out
    out = subprocess.run(
        ["ipmiutil", "power", "-u", *base, "-F", "lan2", "-V", "4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "completed successfully" in out.stdout, out
    out = subprocess.run(
        ["ipmiutil", "health", *base, "-F", "lan"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out


def test_nmap_sees_no_cipher_zero(kbmc623: KbmcProcess) -> None:
    if shutil.which("nmap") is None or os.geteuid() != 0:
        pytest.skip("nmap UDP scans need nmap and root (CI has both)")
    out = subprocess.run(
        ["nmap", "-sU", "-p", "623", "--script", "ipmi-version,ipmi-cipher-zero", "--script-args",
         "vulns.showall", kbmc623.host],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # a verdict, not the absence of one: the refusal of suite 0 is a full Open Session Response
    assert re.search(r"^\|\s+State: NOT VULNERABLE$", out.stdout, re.M), out.stdout
    assert "Version" in out.stdout and "IPMI-2.0" in out.stdout, out.stdout


def test_health_endpoints(kbmc: KbmcProcess) -> None:
    base = f"http://127.0.0.1:{kbmc.health_port}"
    assert httpx.get(f"{base}/healthz", timeout=5).text == "ok\n"
    assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    kbmc.ipmitool("power", "status")
    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    status = sample(
        metrics, "vmbmc_ipmi_requests_total", command="Get Chassis Status", completion_code="0x00"
    )
    assert status is not None and status >= 1
    assert (sample(metrics, "process_resident_memory_bytes") or 0) > 1 << 20


def test_cli_errors_are_clear(emu: EmulatorThread, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VMBMC_USERNAME", "VMBMC_PASSWORD")}
    out = subprocess.run(
        [VMBMC, "kbmc", "--vm", "default/x", "--kubeconfig", emu.kubeconfig],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert out.returncode == 2 and "no credentials" in out.stderr, out
    out = subprocess.run([VMBMC, "kbmc", "--vm", "not-a-ref"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "NAMESPACE/NAME" in out.stderr, out
    creds = tmp_path / "c"
    creds.mkdir()
    (creds / "username").write_text("admin")
    (creds / "password").write_text("some-password")
    out = subprocess.run(
        [
            VMBMC,
            "kbmc",
            "--bmc",
            "default/missing",
            "--kubeconfig",
            emu.kubeconfig,
            "--credentials-dir",
            str(creds),
            "--ipmi-port",
            "0",
            "--health-port",
            "-1",
            "--address",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and "default/missing not found" in out.stderr, out
    assert sys.executable  # the venv's vmbmc ran


def test_ipv6_and_dual_stack(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    cluster.create_vm("ipv6-vm")
    kubeconfig = kbmc_kubeconfig(emu, tmp_path, "default", "ipv6", "ipv6-vm")
    kp = start_kbmc(kubeconfig, tmp_path, "--vm", "default/ipv6-vm", host="::")
    try:
        for host in ("::1", "127.0.0.1"):  # `::` serves IPv6 and IPv4 on one socket
            out = subprocess.run(
                [
                    "ipmitool",
                    "-I",
                    "lanplus",
                    "-H",
                    host,
                    "-p",
                    str(kp.port),
                    "-U",
                    kp.user,
                    "-P",
                    kp.password,
                    "power",
                    "status",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.stdout.strip() == "Chassis Power is off", (host, out)
    finally:
        kp.stop()
