"""Serial over LAN: ipmitool and FreeIPMI's ipmiconsole in a pseudo-terminal against the real
`vmbmc kbmc`, bridged to the emulator's fake guest (its serial console subresource)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from kbmc_process import KbmcProcess, ServedBmc, serve_bmc, start_kbmc
from machine_cluster import Cluster

from vmbmc_devcluster.emulator.harness import EmulatorThread

VM, BMC = "sol-vm", "sol-bmc"
PROMPT = f"{VM} login: ".encode()
BOOT = b"SeaBIOS"


class Terminal:
    """A client in a pseudo-terminal: what it prints is read as it comes, bounded in time."""

    def __init__(self, cmd: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True
        )
        os.close(slave)
        self.seen = b""

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.seen += os.read(self.master, 65536)
            except OSError:  # the client exited and closed its side
                time.sleep(min(timeout, 0.05))

    def expect(self, text: bytes, timeout: float = 20.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.seen.count(text) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} (x{count}) not seen in {timeout} s; got:\n{self.seen!r}")
            self._read(min(left, 0.2))

    def send(self, data: bytes) -> None:
        for byte in data:  # typed, one key at a time
            os.write(self.master, bytes((byte,)))
            time.sleep(0.02)

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        assert self.proc.poll() is not None, f"still running after {timeout} s; got:\n{self.seen!r}"
        self._read(0.05)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        os.close(self.master)


@pytest.fixture(scope="module")
def served(
    emu: EmulatorThread, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedBmc]:
    cluster.create_vm(VM)
    bmc = serve_bmc(emu, cluster, tmp_path_factory.mktemp("sol"), BMC, VM)
    yield bmc
    bmc.kbmc.stop()


@pytest.fixture(scope="module")
def sol_kubeconfig(served: ServedBmc) -> str:
    """The ServiceAccount and Roles the controller gives the kbmc of BMC, for more kbmcs of it."""
    return served.kubeconfig


@pytest.fixture(scope="module")
def sol(served: ServedBmc) -> KbmcProcess:
    return served.kbmc


def ipmitool_argv(
    k: KbmcProcess, *args: str, interface: str = "lanplus", extra: tuple[str, ...] = ()
) -> list[str]:
    return ["ipmitool", "-I", interface, "-H", k.host, "-p", str(k.port), "-U", k.user, "-P", k.password,
            *extra, *args]  # fmt: skip


def ipmiconsole_argv(k: KbmcProcess, *args: str) -> list[str]:
    assert k.port == 623
    return ["ipmiconsole", "-h", k.host, "-u", k.user, "-p", k.password, *args]


def deactivate(k: KbmcProcess) -> None:
    k.ipmitool("sol", "deactivate")  # 80h "already deactivated" is fine too


def power(k: KbmcProcess, action: str) -> None:
    out = k.ipmitool("power", action)
    assert out.returncode == 0, out.stderr


def wait_power(k: KbmcProcess, state: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if f"Chassis Power is {state}" in k.ipmitool("power", "status").stdout:
            return
        time.sleep(0.2)
    raise AssertionError(f"power never {state}")


def test_sol_ipmitool_off_on_echo_cycle_and_escape(sol: KbmcProcess) -> None:
    deactivate(sol)
    wait_power(sol, "off")
    term = Terminal(ipmitool_argv(sol, "sol", "activate", extra=("-C", "17")))
    try:
        term.expect(b"SOL Session operational")
        # A stopped VM: the console says so, and shows the guest once it powers on.
        term.expect(b"is not running; its serial console appears when it powers on")
        power(sol, "on")
        term.expect(BOOT)
        term.expect(PROMPT)
        term.send(b"root\r")
        term.expect(b"root")
        term.expect(PROMPT, count=2)
        # A power cycle while SOL is active: the next boot's lines appear.
        power(sol, "cycle")
        term.expect(BOOT, timeout=30, count=2)
        term.expect(PROMPT, count=3)
        term.send(b"\r~.")
        assert term.wait() == 0, term.seen
        assert b"terminated ipmitool" in term.seen
    finally:
        term.close()
    # `~.` deactivated the payload: a new console may open at once.
    out = sol.ipmitool("raw", "0x06", "0x4a", "0x01")
    assert out.stdout.split()[:2] == ["01", "00"], out  # capacity 1, instance 1 not active


def test_second_console_refused_and_sol_deactivate_frees_it(sol: KbmcProcess) -> None:
    deactivate(sol)
    first = Terminal(ipmitool_argv(sol, "sol", "activate"))
    second: Terminal | None = None
    try:
        first.expect(b"SOL Session operational")
        out = sol.ipmitool("sol", "activate", timeout=20)
        assert "SOL payload already active on another session" in out.stdout + out.stderr, out
        out = sol.ipmitool("sol", "deactivate")
        assert out.returncode == 0, out
        second = Terminal(ipmitool_argv(sol, "sol", "activate"))
        second.expect(b"SOL Session operational")
        second.send(b"\r~.")
        assert second.wait() == 0
    finally:
        first.close()
        if second is not None:
            second.close()


def test_ipmiconsole(sol: KbmcProcess, sol_kubeconfig: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    power(sol, "on")
    wait_power(sol, "on")
    # ipmiconsole takes no port ("hostname invalid" for host:port): a kbmc of the same BMC on 623, on a
    # loopback address of its own (the tests run as root, as CI does).
    k = start_kbmc(
        sol_kubeconfig,
        tmp_path_factory.mktemp("sol-623"),
        "--bmc",
        f"default/{BMC}",
        host="127.22.0.1",
        port=623,
    )
    term = Terminal(ipmiconsole_argv(k, "-I", "17"))
    try:
        term.expect(b"[SOL established]")
        term.send(b"\r")
        term.expect(PROMPT)
        term.send(b"admin\r")
        term.expect(b"admin")
        term.send(b"&.")
        assert term.wait() == 0, term.seen
        out = k.ipmitool("raw", "0x06", "0x4a", "0x01")
        assert out.stdout.split()[:2] == ["01", "00"], out  # `&.` deactivated the payload
    finally:
        term.close()
        k.stop()


def test_sol_refusals(sol: KbmcProcess) -> None:
    deactivate(sol)
    # Operator privilege or above: a USER-level session is refused.
    out = sol.ipmitool("sol", "activate", extra=("-L", "USER"))
    assert "Insufficient privilege level" in out.stdout + out.stderr, out
    # IPMI 1.5: ipmitool refuses by itself; the BMC refuses the payload too (RMCP+ only).
    out = sol.ipmitool("sol", "activate", interface="lan")
    assert "only available over the lanplus interface" in out.stdout + out.stderr, out
    out = sol.ipmitool("raw", "0x06", "0x48", "0x01", "0x01", "0xc0", "0x00", "0x00", "0x00", interface="lan")
    assert "rsp=0xd5" in out.stderr, out


def test_sol_info_names_the_advertised_port(
    sol: KbmcProcess, sol_kubeconfig: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = sol.ipmitool("sol", "info")
    assert out.returncode == 0, out
    assert "Enabled                         : true" in out.stdout
    assert "Force Encryption                : true" in out.stdout
    assert "Privilege Level                 : OPERATOR" in out.stdout
    assert f"Payload Port                    : {sol.port}" in out.stdout
    # Behind a Service (623 → the container port) it names the port clients use.
    other = start_kbmc(
        sol_kubeconfig,
        tmp_path_factory.mktemp("sol-advertised"),
        "--bmc",
        f"default/{BMC}",
        extra=("--advertised-ipmi-port", "623"),
    )
    try:
        out = other.ipmitool("sol", "info")
        assert "Payload Port                    : 623" in out.stdout, out
        out = other.ipmitool("sol", "activate", timeout=20)
        assert "BMC requests SOL session on different port" in out.stdout + out.stderr, out
    finally:
        other.ipmitool("sol", "deactivate")
        other.stop()
