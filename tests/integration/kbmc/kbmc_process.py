"""Run `vmbmc kbmc` as a user would, and real IPMI clients against it (bounded in time)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.log_secrets import kubeconfig_tokens, leaks
from vmbmc.controller.children import BmcInfo
from vmbmc_devcluster.demo.identity import install_kbmc_identity

if TYPE_CHECKING:
    from machine_cluster import Cluster

VMBMC = str(Path(sys.executable).with_name("vmbmc"))
USER, PASSWORD = "admin", "kbmc-test-pw-16c"  # 16 characters: IPMI 1.5 and 2.0 both take it


def free_udp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class KbmcProcess:
    proc: subprocess.Popen[str]
    host: str
    port: int
    health_port: int
    log: Path
    user: str = USER
    password: str = PASSWORD
    secrets: tuple[str, ...] = ()  # what the process was given that must never reach its log

    def ipmitool(
        self,
        *args: str,
        interface: str = "lanplus",
        timeout: float = 30,
        password: str | None = None,
        user: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            "ipmitool",
            "-I",
            interface,
            "-H",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.user if user is None else user,
            "-P",
            self.password if password is None else password,
            *extra,
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def freeipmi(
        self, tool: str, *args: str, driver: str = "LAN_2_0", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            tool,
            "-D",
            driver,
            "-h",
            f"{self.host}:{self.port}",
            "-u",
            self.user,
            "-p",
            self.password,
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def logs(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Every kbmc a test runs: its log never holds the password or token it was given.
        found = leaks(self.logs(), (self.password, *self.secrets), self.user)
        assert not found, f"secrets in {self.log}: {found}"


def start_kbmc(
    kubeconfig: str,
    workdir: Path,
    *who: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra: tuple[str, ...] = (),
    restricted: bool = True,
) -> KbmcProcess:
    creds = workdir / "credentials"
    creds.mkdir(exist_ok=True)
    (creds / "username").write_text(USER + "\n")
    (creds / "password").write_text(PASSWORD + "\n")
    port = port or free_udp_port(host)
    health = free_tcp_port()
    log = workdir / "kbmc.log"
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    if restricted:  # as in a pod: only the name-restricted lists and watches its Roles allow
        env["VMBMC_RESTRICTED"] = "1"
    proc = subprocess.Popen(
        [
            VMBMC,
            "kbmc",
            *who,
            "--kubeconfig",
            kubeconfig,
            "--address",
            host,
            "--ipmi-port",
            str(port),
            "--health-port",
            str(health),
            "--credentials-dir",
            str(creds),
            *extra,
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    kp = KbmcProcess(proc, host, port, health, log, secrets=tuple(kubeconfig_tokens(kubeconfig)))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"kbmc exited {proc.returncode}:\n{log.read_text()}")
        if "kbmc ready" in log.read_text():
            return kp
        time.sleep(0.05)
    kp.stop()
    raise AssertionError(f"kbmc not ready in 20 s:\n{log.read_text()}")


@dataclass
class ServedBmc:
    """A VirtualMachineBMC `default/<name>` and the `vmbmc kbmc` serving it."""

    name: str
    vm: str
    kubeconfig: str
    workdir: Path
    kbmc: KbmcProcess
    redfish: str = ""  # the Redfish base URL; "" when Redfish is off

    def restart(self, extra: tuple[str, ...] = ()) -> None:
        self.kbmc = start_kbmc(self.kubeconfig, self.workdir, "--bmc", f"default/{self.name}", extra=extra)


def serve_bmc(
    emu: Any,
    cluster: Cluster,
    workdir: Path,
    name: str,
    vm: str,
    *,
    redfish: str = "",
    extra: tuple[str, ...] = (),
) -> ServedBmc:
    """Create BMC `default/<name>` of the existing VM `default/<vm>` and start its kbmc on 127.0.0.1 under
    the ServiceAccount and Roles the controller would give it. `redfish`: "" (IPMI only), "https" (its
    self-signed certificate) or "http" (`insecureHTTP` and `--redfish-http`). The caller stops the kbmc."""
    bmc = cluster.create_bmc(name, vm, redfish=redfish)
    kubeconfig = kbmc_kubeconfig(emu, workdir, "default", name, vm, bmc["metadata"]["uid"])
    url = ""
    if redfish:
        port = free_tcp_port()
        extra = ("--redfish-port", str(port), *(("--redfish-http",) if redfish == "http" else ()), *extra)
        url = f"{redfish}://127.0.0.1:{port}"
    proc = start_kbmc(kubeconfig, workdir, "--bmc", f"default/{name}", extra=extra)
    return ServedBmc(name, vm, kubeconfig, workdir, proc, url)


def serve_new_bmc(
    emu: Any, cluster: Cluster, workdir: Path, prefix: str, *, redfish: str = "", extra: tuple[str, ...] = ()
) -> ServedBmc:
    """`serve_bmc` for a new VM and BMC of their own (`<prefix>-<n>-vm`, `<prefix>-<n>`): a fresh
    failed-login count, session table and request history."""
    name = f"{prefix}-{time.monotonic_ns()}"
    cluster.create_vm(f"{name}-vm")
    return serve_bmc(emu, cluster, workdir, name, f"{name}-vm", redfish=redfish, extra=extra)


def kbmc_kubeconfig(emu: Any, workdir: Path, namespace: str, name: str, vm: str, uid: str = "") -> str:
    """A kubeconfig for the kbmc of BMC `namespace/name` (VM `vm` in the same namespace) holding only the
    ServiceAccount and Roles the controller would give it, never the admin token (issue 12)."""
    path = workdir / "kbmc.kubeconfig"
    info = BmcInfo(namespace=namespace, name=name, uid=uid, vm_namespace=namespace, vm_name=vm)
    install_kbmc_identity(emu, info, path)
    return str(path)
