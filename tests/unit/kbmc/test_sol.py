"""SOL packet handling that real clients rarely exercise: retransmission of unacknowledged output,
partial ACKs and NACKs, a retransmitted inbound packet, one payload instance, the configuration
parameters and refusals. The real clients' paths are in tests/integration/kbmc/test_kbmc_sol.py."""

from __future__ import annotations

import asyncio
import struct

from vmbmc.kbmc.sessions import Priv, SessionTable
from vmbmc.kbmc.sol import CC_ALREADY_ACTIVE, SolPayload
from vmbmc.kbmc.wire import Request
from vmbmc.machine.console import Console, ConsoleState, Output, StateListener


class FakeConsole(Console):
    def __init__(self, output: Output, state: StateListener) -> None:
        self.output, self.state = output, state
        self.typed: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> bool:
        self.typed.append(data)
        return True

    def close(self) -> None:
        self.closed = True


class FakeMachine:
    vm = "ns/vm"

    def __init__(self) -> None:
        self.consoles: list[FakeConsole] = []

    def open_console(self, output: Output, state: StateListener) -> FakeConsole:
        console = FakeConsole(output, state)
        self.consoles.append(console)
        return console


def setup(priv: Priv = Priv.ADMIN) -> tuple[SolPayload, FakeMachine, SessionTable, list[bytes]]:
    table = SessionTable()
    machine = FakeMachine()
    sol = SolPayload(machine, table, lambda d, c: None, lambda: 623)  # type: ignore[arg-type]
    sol.config.retry_interval = 2  # 20 ms
    sol.config.accumulate_interval = 1  # 5 ms
    sent: list[bytes] = []
    sol.send = lambda s, payload: sent.append(payload)  # type: ignore[method-assign]
    return sol, machine, table, sent


def session(table: SessionTable, priv: Priv = Priv.ADMIN, port: int = 1000):  # type: ignore[no-untyped-def]
    s = table.create(("127.0.0.1", port), v2=True, peer_id=port)
    assert s is not None
    s.priv = s.max_priv = priv
    table.activate(s)
    return s


def req(netfn: int, cmd: int, data: bytes) -> Request:
    return Request(netfn, cmd, data, 0x81, 1, 0, 0)


ACTIVATE = req(0x06, 0x48, bytes((1, 1, 0xC0, 0, 0, 0)))
DEACTIVATE = req(0x06, 0x49, bytes((1, 1, 0, 0, 0, 0)))


async def until(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


async def test_activate_answers_sizes_and_the_advertised_port_and_one_instance_only() -> None:
    sol, machine, table, _ = setup()
    a, b = session(table), session(table, port=1001)
    name, code, data = sol.command(a, ACTIVATE)
    assert (name, code) == ("Activate Payload", 0)
    assert len(data) == 12 and struct.unpack("<HHHH", data[4:]) == (200, 200, 623, 0xFFFF)
    assert sol.command(b, ACTIVATE)[1] == CC_ALREADY_ACTIVE
    assert sol.command(b, req(0x06, 0x4A, b"\x01"))[1:] == (0, b"\x01\x01\x00")
    assert sol.command(b, DEACTIVATE)[1] == 0  # another session may free it
    assert machine.consoles[0].closed
    assert sol.command(b, DEACTIVATE)[1] == CC_ALREADY_ACTIVE  # 80h: already deactivated
    sol.end(tell=False)


async def test_refusals_privilege_v15_and_disabled() -> None:
    sol, _, table, _ = setup()
    assert sol.command(session(table, Priv.USER), ACTIVATE)[1] == 0xD4
    v15 = table.create(("127.0.0.1", 2000), v2=False)
    assert v15 is not None
    v15.priv = Priv.ADMIN
    table.activate(v15)
    assert sol.command(v15, ACTIVATE)[1] == 0xD5  # payloads need an RMCP+ session
    admin = session(table)
    assert sol.command(admin, req(0x0C, 0x21, bytes((0x0E, 1, 0))))[1] == 0  # disable SOL
    assert sol.command(admin, ACTIVATE)[1] == 0x81
    assert sol.command(admin, req(0x0C, 0x22, bytes((0x0E, 1, 0, 0))))[1:] == (0, b"\x11\x00")


async def test_configuration_parameters() -> None:
    sol, _, table, _ = setup()
    admin, user = session(table), session(table, Priv.USER, 1001)
    get = lambda p: sol.command(user, req(0x0C, 0x22, bytes((0x0E, p, 0, 0))))[1:]  # noqa: E731
    assert get(2) == (0, b"\x11\xc3")  # forced encryption and authentication, operator
    assert get(8) == (0, b"\x11" + struct.pack("<H", 623))
    assert get(9) == (0x80, b"")
    assert sol.command(user, req(0x0C, 0x22, bytes((0x8E, 1, 0, 0))))[1:] == (0, b"\x11")  # revision only
    assert sol.command(user, req(0x0C, 0x21, bytes((0x0E, 5, 0x07))))[1] == 0xD4  # set: admin only
    assert sol.command(admin, req(0x0C, 0x21, bytes((0x0E, 5, 0x07))))[1] == 0  # 19200
    assert get(5) == (0, b"\x11\x07")
    assert sol.command(admin, req(0x0C, 0x21, bytes((0x0E, 5, 0x0F))))[1] == 0xCC  # no such rate
    assert sol.command(admin, req(0x0C, 0x21, bytes((0x0E, 2, 0x04))))[1] == 0xCC  # encryption stays
    assert sol.command(admin, req(0x0C, 0x21, bytes((0x0E, 8, 0x6F, 0x02))))[1] == 0x82  # read-only


async def test_output_is_retransmitted_until_acknowledged_and_partial_acks_resend_the_rest() -> None:
    sol, machine, table, sent = setup()
    a = session(table)
    sol.command(a, ACTIVATE)
    console = machine.consoles[0]
    console.state(ConsoleState.CONNECTED, "")
    console.output(b"hello")
    await until(lambda: len(sent) >= 2)  # sent, then sent again: not acknowledged
    assert sent[0] == sent[1] == bytes((1, 0, 0, 0)) + b"hello"
    # The console takes 2 of the 5 characters: the other 3 come in the next packet.
    assert sol.receive(a, bytes((0, 1, 2, 0))) is None
    await until(lambda: sent[-1][0] == 2)
    assert sent[-1] == bytes((2, 0, 0, 0)) + b"llo"
    # A NACK: nothing taken, sent again later.
    sol.receive(a, bytes((0, 2, 0, 0x40)))
    await until(lambda: sent[-1][0] == 3)
    assert sent[-1][4:] == b"llo"
    sol.receive(a, bytes((0, 3, 3, 0)))
    count = len(sent)
    await asyncio.sleep(0.1)
    assert len(sent) == count  # acknowledged: no more retransmits
    sol.end(tell=False)


async def test_a_retransmitted_inbound_packet_is_acknowledged_again_but_typed_once() -> None:
    sol, machine, table, _ = setup()
    a, other = session(table), session(table, port=1001)
    sol.command(a, ACTIVATE)
    console = machine.consoles[0]
    console.state(ConsoleState.CONNECTED, "")
    assert sol.receive(a, bytes((5, 0, 0, 0)) + b"ls\r") == bytes((0, 5, 3, 0))
    assert sol.receive(a, bytes((5, 0, 0, 0)) + b"ls\r") == bytes((0, 5, 3, 0))
    assert console.typed == [b"ls\r"]
    assert sol.receive(other, bytes((6, 0, 0, 0)) + b"x") is None  # not the SOL session's
    sol.end(tell=False)


async def test_a_stopped_vm_is_said_and_the_session_ending_frees_the_payload() -> None:
    sol, machine, table, sent = setup()
    a = session(table)
    sol.command(a, ACTIVATE)
    machine.consoles[0].state(ConsoleState.WAITING, "the VM is not running")
    await until(lambda: bool(sent))
    assert b"ns/vm is not running" in sent[0]
    table.close(a.id)
    b = session(table, port=1001)
    assert sol.command(b, ACTIVATE)[1] == 0  # the closed session's SOL was freed
    assert machine.consoles[0].closed
    sol.end(tell=False)
