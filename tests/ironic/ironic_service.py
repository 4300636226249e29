"""A standalone OpenStack Ironic for the tests: the all-in-one `ironic` process (API and conductor in one,
`rpc_transport = none`), no authentication, sqlite, listening on 127.0.0.1 only; and a small client for
its REST API (httpx, the product venv's own test dependency: nothing of Ironic's is imported here).

The configuration is what a standalone Ironic needs against `vmbmc demo` (docs/ironic.md explains each
part); the intervals that only slow a test down are lowered.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from vmbmc_devcluster.testing.waiting import wait_until

API_VERSION = "1.115"  # ironic 39.0.0's newest; nodes' `inventory` needs >= 1.81
START_TIMEOUT = 120.0  # seconds until the API answers (its first start compiles what it imports)
STEP_TIMEOUT = 120.0  # seconds for one provision or power step
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(root: Path, api_port: int, http_url: str, http_root: Path, console_ports: str) -> str:
    return f"""\
[DEFAULT]
auth_strategy = noauth
rpc_transport = none
host = vmbmc-ironic-test
my_ip = 127.0.0.1
# INFO, not DEBUG: logging every Redfish body costs a loaded machine seconds
debug = false
log_file = {root}/ironic.log
state_path = {root}/state
tempdir = {root}/tmp
enabled_hardware_types = redfish,ipmi
enabled_power_interfaces = redfish,ipmitool
enabled_management_interfaces = redfish,ipmitool
enabled_boot_interfaces = redfish-virtual-media,pxe
enabled_deploy_interfaces = ramdisk
default_deploy_interface = ramdisk
enabled_inspect_interfaces = redfish,no-inspect
enabled_console_interfaces = ipmitool-socat,no-console
enabled_network_interfaces = noop
enabled_storage_interfaces = noop
enabled_bios_interfaces = redfish,no-bios
enabled_firmware_interfaces = no-firmware
enabled_raid_interfaces = no-raid
enabled_rescue_interfaces = no-rescue
enabled_vendor_interfaces = no-vendor

[api]
host_ip = 127.0.0.1
port = {api_port}

[database]
connection = sqlite:///{root}/ironic.sqlite

[dhcp]
dhcp_provider = none

[conductor]
automated_clean = False
check_provision_state_interval = 5
power_state_change_timeout = 60
heartbeat_interval = 5

[deploy]
http_url = {http_url}
http_root = {http_root}

[redfish]
use_swift = False
# how often a BIOS apply_configuration without a ramdisk polls whether the settings took effect (60 s)
firmware_update_status_interval = 5

[pxe]
tftp_root = {root}/tftp
tftp_master_path = {root}/tftp_master

[ipmi]
# Ironic waits this long between two IPMI commands to one BMC (default 5 s, for fragile hardware)
min_command_interval = 1
command_retry_timeout = 30

[console]
socat_address = 127.0.0.1
port_range = {console_ports}
terminal_pid_dir = {root}/console
terminal_timeout = 120

[oslo_concurrency]
lock_path = {root}/locks
"""


@dataclass
class Ironic:
    venv: Path
    root: Path  # its config, database, logs and folders
    http_root: Path
    http_url: str
    api_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.api_port}/v1"
        self.http = httpx.Client(
            base_url=self.url, headers={"X-OpenStack-Ironic-API-Version": API_VERSION}, timeout=60
        )

    @property
    def log(self) -> Path:
        return self.root / "ironic.log"

    def start(self) -> None:
        for sub in ("state", "tmp", "tftp", "tftp_master", "console", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        console = free_port()  # Ironic takes a free port from the 50 from there for each console
        conf = self.root / "ironic.conf"
        ports = f"{console}:{console + 50}"
        conf.write_text(config(self.root, self.api_port, self.http_url, self.http_root, ports))
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        bin_dir = self.venv / "bin"
        dbsync = subprocess.run(
            [str(bin_dir / "ironic-dbsync"), "--config-file", str(conf), "create_schema"],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert dbsync.returncode == 0, f"ironic-dbsync: {dbsync.stderr[-3000:]}"
        with (self.root / "ironic.out").open("wb") as out:
            # a session of its own: stop() reaches every process it started (its workers, socat)
            self.proc = subprocess.Popen(
                [str(bin_dir / "ironic"), "--config-file", str(conf)],
                cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_until(self._answers, START_TIMEOUT, f"Ironic's API on {self.url}")
        except AssertionError as err:
            raise AssertionError(f"{err}\nIronic's log:\n{self.tail()}") from None

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"ironic exited: {self.tail()}"
        try:
            return self.http.get("/drivers").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        """SIGTERM (Ironic stops its workers and consoles), then SIGKILL to what is left of its session."""
        self.http.close()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        for pid in session_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        """The last ERROR/WARNING lines of Ironic's log, for failure messages."""
        if not self.log.exists():  # it did not get as far as its log: its own output says why
            out = self.root / "ironic.out"
            return out.read_text(errors="replace")[-3000:] if out.exists() else ""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join([ln for ln in text if " ERROR " in ln or " WARNING " in ln][-lines:])

    # --- the REST API ---------------------------------------------------------------------------------
    def node(self, name: str) -> dict[str, Any]:
        r = self.http.get(f"/nodes/{name}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> httpx.Response:
        r = self.http.request(method, path, **kwargs)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def wait_node(self, name: str, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            node = self.node(name)
            return node if done(node) else None

        try:
            return dict(wait_until(check, STEP_TIMEOUT, what))
        except AssertionError as err:
            state = {k: self.node(name)[k] for k in SUMMARY}
            raise AssertionError(f"{err}\nnode {name}: {state}\nIronic's log:\n{self.tail()}") from None

    def provision(self, name: str, target: str, reaches: str, **body: Any) -> dict[str, Any]:
        """A provision action; → the node once it rests in `reaches` (no target left), with no last_error."""
        self.call("PUT", f"/nodes/{name}/states/provision", 202, json={"target": target, **body})
        # Ironic sets the target before it answers 202: no target left means the action is over
        node = self.wait_node(name, lambda n: n["target_provision_state"] is None, f"{name}: {target}")
        assert (node["provision_state"], node["last_error"]) == (reaches, None), _summary(node)
        return node

    def power(self, name: str, target: str, reaches: str) -> dict[str, Any]:
        self.call("PUT", f"/nodes/{name}/states/power", 202, json={"target": target})
        node = self.wait_node(name, lambda n: n["target_power_state"] is None, f"{name}: {target}")
        assert (node["power_state"], node["last_error"]) == (reaches, None), _summary(node)
        return node


SUMMARY = ("provision_state", "target_provision_state", "power_state", "target_power_state", "last_error")


def _summary(node: dict[str, Any]) -> str:
    return str({k: node.get(k) for k in SUMMARY})


def session_pids(sid: int) -> list[int]:
    """Processes of session `sid` (the one Ironic was started in: its workers, socat, ipmitool)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid pgrp session; a zombie has ended already
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def listening(pids: list[int]) -> set[str]:
    """The local addresses ("ip:port") of the TCP sockets these processes listen on and of their UDP
    sockets, from /proc (IPv4 and IPv6)."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if inode in inodes and (table.startswith("udp") or state == "0A"):  # 0A: LISTEN
                out.add(_address(local))
    return out


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc/net prints each 32-bit word of the address in host (little-endian) byte order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return f"{ipaddress.ip_address(words)}:{int(port, 16)}"
