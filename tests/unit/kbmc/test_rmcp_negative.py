"""RMCP+ error paths on the LAN channel, driven by an independent console (tests/rmcp_client.py):
unknown session, bad integrity code, replay, undecryptable payload, RAKP 3 retransmit, a client
refusing RAKP 2, a bad RAKP 3 HMAC, unknown users; the failed-login hold; full-length refusals;
and the session table's eviction of unauthenticated handshakes."""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "redfish"))

from machine_double import FakeMachine

from tests.fake_clock import Clock
from tests.rmcp_client import OPEN_RSP, Console, ipmi_message, parse
from vmbmc.auth import LoginLimiter, StaticCredentials
from vmbmc.kbmc.commands import Commands
from vmbmc.kbmc.lan import Identity, LanChannel, Later
from vmbmc.kbmc.sessions import SessionTable

CLIENT = ("127.0.0.1", 40000)
USER, PASSWORD = "admin", "rmcp-test-pw"
GUID = bytes(range(16))
GET_CHASSIS_STATUS = (0x00, 0x01)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lan(clock: Clock) -> tuple[LanChannel, FakeMachine]:
    machine = FakeMachine(transition_delay=0)
    channel = LanChannel(
        Commands(machine),
        StaticCredentials(USER, PASSWORD),
        LoginLimiter(clock=clock),
        Identity(GUID),
        SessionTable(clock=clock),
    )
    return channel, machine


def via(channel: LanChannel, client: tuple[str, int] = CLIENT) -> Callable[[bytes], bytes | None]:
    def send(datagram: bytes) -> bytes | None:
        out = channel.handle(datagram, client)
        assert not isinstance(out, Later), "answer delayed"
        return out

    return send


def console(channel: LanChannel, suite: int = 3, **kw: object) -> Console:
    return Console(via(channel), kw.pop("user", USER), kw.pop("password", PASSWORD), suite, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("suite", [3, 17])
def test_login_and_command_known_answers(lan, suite: int) -> None:
    """The console checks RAKP 2, RAKP 4 and every reply's integrity code with its own arithmetic."""
    channel, _ = lan
    c = console(channel, suite)
    c.login()
    assert c.guid == GUID
    reply = c.answer(channel.handle(c.request(*GET_CHASSIS_STATUS), CLIENT))  # type: ignore[arg-type]
    assert reply is not None and reply[6] == 0x00  # completion code


def test_unknown_session_id_is_dropped(lan) -> None:
    channel, machine = lan
    c = console(channel)
    c.login()
    c.seq += 1
    forged = c.signed_packet(c.encrypt(ipmi_message(0x00, 0x02, b"\x01")), c.seq, sid=c.bmc_sid ^ 0x5A5A)
    assert channel.handle(forged, CLIENT) is None
    assert machine.calls == []


def test_bad_integrity_code_is_dropped_and_changes_nothing(lan) -> None:
    channel, machine = lan
    c = console(channel)
    c.login()
    good = c.request(0x00, 0x02, b"\x01")  # power on
    for bad in (good[:-1] + bytes((good[-1] ^ 1,)), good[:-12] + bytes(12), good[:-3]):
        assert channel.handle(bad, CLIENT) is None
    assert machine.calls == []
    # the window did not move: the genuine packet with that sequence number still works
    assert c.answer(channel.handle(good, CLIENT))[6] == 0x00  # type: ignore[arg-type,index]
    assert len(machine.calls) == 1


def test_replay_and_out_of_window_sequence_numbers_are_dropped(lan) -> None:
    channel, machine = lan
    c = console(channel)
    c.login()
    first = c.request(0x00, 0x02, b"\x01", rq_seq=3)
    assert channel.handle(first, CLIENT) is not None
    assert channel.handle(first, CLIENT) is None  # the same packet again: a replay
    far = c.signed_packet(c.encrypt(ipmi_message(*GET_CHASSIS_STATUS, rq_seq=4)), c.seq + 100)
    assert channel.handle(far, CLIENT) is None  # too far ahead
    for _ in range(3):  # the window moves in steps of at most 16
        c.seq += 15
        assert channel.handle(c.request(*GET_CHASSIS_STATUS, rq_seq=5), CLIENT) is not None
    behind = c.signed_packet(c.encrypt(ipmi_message(*GET_CHASSIS_STATUS, rq_seq=6)), c.seq - 35)
    assert channel.handle(behind, CLIENT) is None  # too far behind
    zero = c.signed_packet(c.encrypt(ipmi_message(*GET_CHASSIS_STATUS, rq_seq=7)), 0)
    assert channel.handle(zero, CLIENT) is None
    assert len(machine.calls) == 1


def test_undecryptable_payload_is_dropped(lan) -> None:
    channel, machine = lan
    c = console(channel)
    c.login()
    garbled = c.encrypt(ipmi_message(0x00, 0x02, b"\x01"))
    samples = [
        garbled[:-1],  # not a whole number of blocks
        garbled[:16],  # an IV and nothing
        garbled[:16] + bytes(16),  # decrypts to junk with an impossible pad length
        c.encrypt(b"\x01\x02"),  # decrypts, but no IPMI message inside
    ]
    for payload in samples:
        c.seq += 1
        assert channel.handle(c.signed_packet(payload, c.seq), CLIENT) is None
    assert machine.calls == []
    assert c.answer(channel.handle(c.request(*GET_CHASSIS_STATUS), CLIENT)) is not None


def test_rakp3_retransmit_gets_the_same_rakp4(lan) -> None:
    channel, _ = lan
    c = console(channel)
    assert c.open() == 0
    assert c.rakp1()[1] == 0  # type: ignore[index]
    c.derive()
    request = c.rakp3_request()
    first, again = via(channel)(request), via(channel)(request)
    assert first is not None and first == again
    assert parse(first)[3][8:] == c.rakp4_code()
    assert len(channel.table.active()) == 1  # one session, not two


def test_client_refusing_rakp2_ends_the_set_up_and_counts(lan) -> None:
    channel, _ = lan
    c = console(channel)
    assert c.open() == 0 and c.rakp1()[1] == 0  # type: ignore[index]
    assert c.rakp3(status=0x0F) is None  # "invalid integrity check value": no RAKP 4 for a refusal
    assert c.rakp3() is None  # the set-up is gone: a correct RAKP 3 now finds nothing
    assert channel.table.active() == [] and channel.limiter.failures(CLIENT[0]) == 1


def test_bad_rakp3_hmac_is_refused_and_counts(lan) -> None:
    channel, _ = lan
    c = console(channel)
    assert c.open() == 0 and c.rakp1()[1] == 0  # type: ignore[index]
    rakp4 = c.rakp3(code=bytes(20))
    assert rakp4 is not None and rakp4[1] == 0x0F and len(rakp4) == 8  # invalid integrity check value
    assert c.rakp3() is None  # the set-up was closed
    assert channel.table.active() == [] and channel.limiter.failures(CLIENT[0]) == 1


def test_unknown_user_in_rakp1_is_refused_and_its_retransmit_gets_the_same_answer(lan) -> None:
    channel, _ = lan
    c = console(channel, user="nobody")
    assert c.open() == 0
    first = c.rakp1()
    assert first is not None and first[1] == 0x0D  # unauthorized name
    assert c.rakp1() == first
    assert channel.limiter.failures(CLIENT[0]) == 1  # a retransmit is not a second failure
    c.derive()
    assert c.rakp3() is None  # nothing to authenticate against


def test_wrong_password_is_noticed_by_the_console_in_rakp2(lan) -> None:
    channel, _ = lan
    c = console(channel, password="not-the-password")
    assert c.open() == 0
    rakp2 = c.rakp1()
    assert rakp2 is not None and rakp2[1] == 0 and rakp2[40:] != c.rakp2_code()


def test_held_address_gets_failures_late_and_correct_logins_at_once(lan, clock: Clock) -> None:
    channel, _ = lan
    for _ in range(5):  # unknown users and bad RAKP 3 HMACs alike
        c = console(channel, user="nobody")
        assert c.open() == 0 and c.rakp1()[1] == 0x0D  # type: ignore[index]
    assert channel.limiter.held(CLIENT[0])
    c = console(channel, user="nobody")
    assert c.open() == 0
    late = channel.handle(c.rakp1_request(), CLIENT)
    assert isinstance(late, Later) and late.delay == 2.0 and parse(late.datagram)[3][1] == 0x0D
    clock.now += 0.5
    again = channel.handle(c.rakp1_request(), CLIENT)  # a retransmit waits for the rest of the delay
    assert isinstance(again, Later) and again.delay == pytest.approx(1.5)
    clock.now += 1.5  # a client that waited for its answer: its next attempt is alone again
    wrong = console(channel)
    assert wrong.open() == 0 and wrong.rakp1()[1] == 0  # type: ignore[index]
    out = channel.handle(wrong.rakp3_request(code=bytes(20)), CLIENT)
    assert isinstance(out, Later) and parse(out.datagram)[3][1] == 0x0F
    assert channel.limiter.delayed == 2
    clock.now += 2.0
    console(channel).login()  # via() asserts nothing was delayed or dropped
    console(channel).login()  # and again at once: a correct check frees the turn
    assert channel.limiter.held(CLIENT[0]) and channel.limiter.delayed == 2


def test_parallel_attempts_from_a_held_address_wait_their_turn(lan, clock: Clock) -> None:
    """Consoles racing from one held address: one RAKP 3 check per delay; the others are dropped
    unchecked (no queue over UDP) until a retransmit finds the turn free; the right password among the
    guesses is answered only in such a turn."""
    channel, _ = lan
    for _ in range(5):
        c = console(channel, user="nobody")
        assert c.open() == 0 and c.rakp1()[1] == 0x0D  # type: ignore[index]
    consoles = [console(channel, password=f"guess-{n}") for n in range(4)]
    consoles[2] = console(channel)  # the right one
    for c in consoles:  # RAKP 1 names a known user: answered at once, no check of a credential
        assert c.open() == 0 and c.rakp1()[1] == 0  # type: ignore[index]
    outs = [channel.handle(c.rakp3_request(), CLIENT) for c in consoles]
    assert isinstance(outs[0], Later) and outs[0].delay == 2.0  # checked, failed: answered late
    assert outs[1:] == [None, None, None] and channel.limiter.refused == 3  # dropped unchecked
    assert channel.limiter.checks_held == 1
    clock.now += 1.9  # a retransmit before the turn is free: dropped again
    assert channel.handle(consoles[2].rakp3_request(), CLIENT) is None
    clock.now += 0.1
    rakp4 = channel.handle(consoles[2].rakp3_request(), CLIENT)  # the right password, in its turn
    assert isinstance(rakp4, bytes) and parse(rakp4)[3][1] == 0
    out = channel.handle(consoles[3].rakp3_request(), CLIENT)  # a correct check freed the turn
    assert isinstance(out, Later) and channel.limiter.checks_held == 3
    assert len(channel.table.active()) == 1


def test_cipher_zero_refusal_is_a_full_open_session_response(lan) -> None:
    channel, _ = lan
    c = console(channel)
    for auth, integrity, conf in ((0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 2, 1)):
        reply = via(channel)(c.open_request(auth, integrity, conf))
        assert reply is not None
        ptype, _, _, payload, _ = parse(reply)
        assert ptype == OPEN_RSP and len(payload) == 36  # IPMI 2.0 table 13-10
        assert payload[1] == 0x11  # no matching cipher suite
        assert struct.unpack("<II", payload[4:12]) == (c.console_sid, 0)
        assert payload[12:36:8] == bytes((0, 1, 2)) and payload[16:36:8] == bytes((auth, integrity, conf))
    assert len(channel.table) == 0


def test_spoofed_open_session_flood_never_refuses_a_prompt_client(lan, clock: Clock) -> None:
    channel, _ = lan
    table = channel.table
    flood = 0

    def spoof(n: int) -> None:
        nonlocal flood
        for _ in range(n):
            flood += 1
            source = (f"127.66.{flood // 250 % 250}.{flood % 250 + 1}", 623)
            c = Console(via(channel, source), USER, PASSWORD)
            assert c.open() == 0  # every Open Session is answered: room is made by eviction
            clock.now += 0.001  # 1,000 a second

    spoof(3 * table.max_handshakes)
    assert table.handshakes == table.max_handshakes and table.evicted > 0
    for _ in range(20):  # honest consoles interleaved with the flood all get in
        c = console(channel)
        assert c.open() == 0
        spoof(50)
        assert c.rakp1()[1] == 0  # type: ignore[index]
        spoof(50)
        c.derive()
        assert c.rakp3()[1] == 0  # type: ignore[index]
    assert len(table.active()) == 20


def test_twenty_concurrent_consoles_from_one_address_during_a_flood(lan, clock: Clock) -> None:
    """No per-address cap: 20 set-ups from one address in flight together, while spoofed Open
    Sessions fill the table, all complete."""
    channel, _ = lan
    for i in range(2 * channel.table.max_handshakes):
        Console(via(channel, (f"127.67.{i // 250}.{i % 250 + 1}", 623)), USER, PASSWORD).open()
        clock.now += 0.001
    consoles = [Console(via(channel, ("127.0.0.1", 41000 + i)), USER, PASSWORD) for i in range(20)]
    for c in consoles:
        assert c.open() == 0
    for i in range(200):  # more spoofed set-ups arrive before the honest RAKP 1s
        Console(via(channel, (f"127.68.0.{i + 1}", 623)), USER, PASSWORD).open()
    for c in consoles:
        assert c.rakp1()[1] == 0  # type: ignore[index]
        c.derive()
    for c in consoles:
        assert c.rakp3()[1] == 0  # type: ignore[index]
    assert len(channel.table.active()) == 20


def test_an_address_holding_many_handshakes_is_evicted_first(lan, clock: Clock) -> None:
    channel, _ = lan
    table = channel.table
    hog = [
        Console(via(channel, ("127.69.0.1", 1000 + i)), USER, PASSWORD) for i in range(table.max_handshakes)
    ]
    for c in hog:
        assert c.open() == 0
    clock.now += 1.0  # older than the grace period
    others = [Console(via(channel, (f"127.70.0.{i + 1}", 623)), USER, PASSWORD) for i in range(100)]
    for c in others:
        assert c.open() == 0
    assert all(table.get(c.bmc_sid) is not None for c in others)  # the hog paid for them
    assert sum(table.get(c.bmc_sid) is None for c in hog) == 100


def test_authenticated_sessions_are_never_evicted(lan) -> None:
    channel, _ = lan
    channel.table.max_sessions = 3
    for _ in range(3):
        console(channel).login()
    c = console(channel)
    assert c.open() == 0x01  # insufficient resources: all sessions are in use
    assert len(channel.table.active()) == 3
