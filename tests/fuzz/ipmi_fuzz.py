"""A seeded IPMI datagram fuzzer: well-formed templates of every message the LAN channel parses,
mutated (bit flips, truncation, growth, length fields at their limits, spliced fields). The same
seed gives the same datagrams, so a failure is reproducible from its seed and index."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from tests.rmcp_client import Console, ipmi_message, packet

RMCP = bytes((0x06, 0x00, 0xFF, 0x07))


def _v15(message: bytes, sid: int = 0, authtype: int = 0, seq: int = 0, code: bytes = b"") -> bytes:
    head = bytes((authtype,)) + struct.pack("<II", seq, sid) + (code if authtype else b"")
    return RMCP + head + bytes((len(message),)) + message


def templates(rng: random.Random, user: str) -> list[bytes]:
    """One of each kind of datagram the BMC parses, with random ids where a session is named."""
    sid = rng.getrandbits(32)
    c = Console(lambda d: None, user, "x" * 12, rng.choice((3, 17)))
    c.bmc_sid = sid
    c.k1, c.k2 = rng.randbytes(32), rng.randbytes(32)
    asf_ping = bytes((0x06, 0x00, 0xFF, 0x06)) + struct.pack(">IBBBB", 4542, 0x80, rng.getrandbits(8), 0, 0)
    return [
        asf_ping,
        _v15(ipmi_message(0x06, 0x38, b"\x8e\x04")),  # Get Channel Auth Capabilities
        _v15(ipmi_message(0x06, 0x39, bytes((2,)) + user.encode().ljust(16, b"\0"))),  # Get Session Challenge
        _v15(ipmi_message(0x06, 0x39, bytes((2,)) + b"fuzz".ljust(16, b"\0"))),
        _v15(ipmi_message(0x06, 0x3A, bytes((2, 4)) + rng.randbytes(16) + b"\1\0\0\0"), sid, 2, 0,
             rng.randbytes(16)),  # Activate Session
        _v15(ipmi_message(0x00, 0x02, b"\x01"), sid, 2, rng.getrandbits(32), rng.randbytes(16)),  # power on
        packet(0x00, 0, 0, ipmi_message(0x06, 0x54, b"\x0e\x00\x80")),  # Get Channel Cipher Suites
        c.open_request(),
        c.open_request(0, 0, 0),
        c.rakp1_request(),
        c.rakp3_request(code=rng.randbytes(20)),
        c.rakp3_request(status=0x0F),
        c.request(0x00, 0x02, b"\x01"),  # power on in a session nobody opened
        c.request(0x06, 0x02),  # Cold Reset, ditto
    ]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        if op == 0 and out:  # flip a bit
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif op == 1 and out:  # a random byte
            out[rng.randrange(len(out))] = rng.getrandbits(8)
        elif op == 2:  # truncate
            del out[rng.randrange(len(out) + 1):]
        elif op == 3:  # grow
            out += rng.randbytes(rng.choice((1, 7, 16, 300, 1100)))
        elif op == 4 and len(out) > 5:  # a length-like byte at its limits
            out[rng.randrange(4, len(out))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
        elif op == 5 and len(out) > 8:  # splice a slice elsewhere
            a = rng.randrange(len(out))
            piece = out[a : a + rng.randint(1, 16)]
            b = rng.randrange(len(out))
            out[b:b] = piece
        elif op == 6 and len(out) > 6:  # payload type / auth type byte
            out[rng.choice((4, 5))] = rng.getrandbits(8)
        elif op == 7 and len(out) > 16:  # a 16-bit length field at its limits
            pos = rng.randrange(4, len(out) - 1)
            out[pos : pos + 2] = struct.pack("<H", rng.choice((0, 1, 0x7FFF, 0xFFFF)))
    return bytes(out)


def datagrams(seed: int, count: int, user: str) -> Iterator[bytes]:
    rng = random.Random(seed)
    pool = templates(rng, user)
    for i in range(count):
        if i % 200 == 0:
            pool = templates(rng, user)
        base = rng.choice(pool)
        yield base if rng.random() < 0.05 else mutate(rng, base)
