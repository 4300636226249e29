"""Bad input on the LAN channel: truncated, oversized and random datagrams, bad checksums, replayed
sequence numbers, wrong session ids. Dropped or answered with the right code; never a crash, never
a state change."""

from __future__ import annotations

import os
import random
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "redfish"))

from machine_double import FakeMachine

from vmbmc.auth import LoginLimiter, StaticCredentials
from vmbmc.kbmc import crypto, wire
from vmbmc.kbmc.commands import Commands
from vmbmc.kbmc.lan import Identity, LanChannel
from vmbmc.kbmc.sessions import SeqWindow
from vmbmc.machine.types import PowerState

CLIENT = ("127.0.0.1", 40000)
USER, PASSWORD = "admin", "password"


@pytest.fixture
def lan() -> tuple[LanChannel, FakeMachine]:
    machine = FakeMachine(transition_delay=0)
    channel = LanChannel(
        Commands(machine), StaticCredentials(USER, PASSWORD), LoginLimiter(), Identity(bytes(16))
    )
    return channel, machine


def message(netfn: int, cmd: int, data: bytes = b"", seq: int = 1) -> bytes:
    head = bytes((0x20, netfn << 2))
    body = bytes((0x81, seq << 2, cmd)) + data
    return head + bytes((wire.checksum(head),)) + body + bytes((wire.checksum(body),))


def sessionless(msg: bytes) -> bytes:
    return wire.build_v15(wire.AUTH_NONE, 0, 0, b"", msg)


def response_code(datagram: bytes, authenticated: bool = False) -> int:
    pos = 4 + 9 + (16 if authenticated else 0)
    msg = datagram[pos + 1 :]
    return msg[6]


class V15Client:
    """Just enough of an IPMI 1.5 console to open a session and send commands."""

    def __init__(self, lan: LanChannel) -> None:
        self.lan = lan
        self.key = crypto.password_key(PASSWORD, 16) or b""
        out = lan.handle(sessionless(message(6, 0x39, bytes((2,)) + USER.encode().ljust(16, b"\0"))), CLIENT)
        assert out is not None and response_code(out) == 0
        msg = out[14:]
        self.sid, challenge = struct.unpack("<I", msg[7:11])[0], msg[11:27]
        activate = message(6, 0x3A, bytes((2, 4)) + challenge + struct.pack("<I", 1000))
        out = lan.handle(self.packet(activate, 0), CLIENT)
        assert out is not None and response_code(out, True) == 0
        self.seq = struct.unpack("<I", out[42:46])[0]  # initial inbound sequence number
        assert self.send(message(6, 0x3B, b"\x04"), seq_no=2)[0] == 0

    def packet(self, msg: bytes, seq: int) -> bytes:
        return wire.build_v15(
            wire.AUTH_MD5, seq, self.sid, crypto.md5_auth_code(self.key, self.sid, msg, seq), msg
        )

    def send(self, msg: bytes, seq_no: int | None = None) -> tuple[int | None, bytes]:
        if seq_no is None:
            self.seq += 1
        datagram = self.packet(msg, self.seq)
        out = self.lan.handle(datagram, CLIENT)
        return (None if out is None else response_code(out, True)), datagram


def test_random_and_truncated_datagrams_never_crash(lan) -> None:
    channel, machine = lan
    rng = random.Random(5)
    valid = sessionless(message(6, 0x38, b"\x8e\x04"))
    assert channel.handle(valid, CLIENT) is not None
    samples = [b"", b"\x06", valid[:5], valid[:-1], valid + b"\0" * 2000, os.urandom(1500)]
    samples += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))) for _ in range(2000)]
    samples += [
        b"\x06\x00\xff\x07" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        for _ in range(2000)
    ]
    for datagram in samples:
        channel.handle(datagram, CLIENT)  # must not raise
    assert machine.calls == [] and machine.power_status().state is PowerState.OFF
    assert len(channel.table) == 0 or all(not s.active for s in channel.table._sessions.values())


def test_bad_checksums_are_dropped(lan) -> None:
    channel, _ = lan
    msg = bytearray(message(6, 0x38, b"\x8e\x04"))
    msg[-1] ^= 0xFF
    assert channel.handle(sessionless(bytes(msg)), CLIENT) is None
    msg = bytearray(message(6, 0x38, b"\x8e\x04"))
    msg[2] ^= 0xFF
    assert channel.handle(sessionless(bytes(msg)), CLIENT) is None


def test_sessionless_commands_other_than_set_up_are_dropped(lan) -> None:
    channel, machine = lan
    assert channel.handle(sessionless(message(0, 0x02, b"\x01")), CLIENT) is None  # power on, no session
    assert machine.calls == []


def test_replayed_packet_is_dropped_and_acts_once(lan) -> None:
    channel, machine = lan
    client = V15Client(channel)
    code, datagram = client.send(message(0, 0x02, b"\x01", seq=5))
    assert code == 0 and len(machine.calls) == 1
    assert channel.handle(datagram, CLIENT) is None  # same session sequence number: a replay
    assert len(machine.calls) == 1


def test_retransmit_is_answered_without_acting_twice(lan) -> None:
    channel, machine = lan
    client = V15Client(channel)
    code, _ = client.send(message(0, 0x02, b"\x01", seq=7))
    assert code == 0
    code, _ = client.send(message(0, 0x02, b"\x01", seq=7))  # new session seq, same request
    assert code == 0 and len(machine.calls) == 1


def test_wrong_session_id_and_bad_auth_code(lan) -> None:
    channel, machine = lan
    client = V15Client(channel)
    msg = message(0, 0x02, b"\x01", seq=9)
    client.seq += 1
    forged = wire.build_v15(wire.AUTH_MD5, client.seq, client.sid ^ 1, b"\0" * 16, msg)
    assert channel.handle(forged, CLIENT) is None
    bad = wire.build_v15(wire.AUTH_MD5, client.seq, client.sid, b"\0" * 16, msg)
    assert channel.handle(bad, CLIENT) is None
    assert channel.handle(client.packet(msg, client.seq), ("127.0.0.2", 40000)) is None  # another client
    assert machine.calls == []


def test_unknown_command_and_bad_length(lan) -> None:
    channel, _ = lan
    client = V15Client(channel)
    assert client.send(message(0x30, 0x01, seq=10))[0] == 0xC1
    assert client.send(message(0, 0x02, b"", seq=11))[0] == 0xC7  # chassis control without data
    assert client.send(message(0, 0x09, b"\x05", seq=12))[0] == 0xC7


def test_rmcpplus_refuses_cipher_zero_and_unknown_user(lan) -> None:
    channel, _ = lan
    proposal = bytes((0, 0, 0, 0)) + struct.pack("<I", 0xA0A2A3A4)
    proposal += (
        bytes((0, 0, 0, 8, 0, 0, 0, 0)) + bytes((1, 0, 0, 8, 0, 0, 0, 0)) + bytes((2, 0, 0, 8, 0, 0, 0, 0))
    )
    out = channel.handle(wire.build_v20(wire.PAYLOAD_OPEN_REQ, 0, 0, proposal), CLIENT)
    assert out is not None and out[4 + 12 + 1] == 0x11  # no matching cipher suite
    proposal = proposal[:12] + b"\x01" + proposal[13:20] + b"\x01" + proposal[21:28] + b"\x01" + proposal[29:]
    out = channel.handle(wire.build_v20(wire.PAYLOAD_OPEN_REQ, 0, 0, proposal), CLIENT)
    assert out is not None and out[4 + 12 + 1] == 0
    bmc_sid = struct.unpack("<I", out[4 + 12 + 8 : 4 + 12 + 12])[0]
    rakp1 = (
        bytes((0, 0, 0, 0)) + struct.pack("<I", bmc_sid) + os.urandom(16) + bytes((0x14, 0, 0, 6)) + b"nobody"
    )
    out = channel.handle(wire.build_v20(wire.PAYLOAD_RAKP1, 0, 0, rakp1), CLIENT)
    assert out is not None and out[4 + 12 + 1] == 0x0D  # unauthorized name, at once


def test_sequence_window() -> None:
    w = SeqWindow(100)
    assert w.accept(101) and w.accept(103) and w.accept(102)
    assert not w.accept(102)  # seen
    assert not w.accept(100 + 40)  # too far ahead
    assert not w.accept(50)  # too far behind
    assert not w.accept(0)
