"""The bytes on the wire: RMCP, ASF presence ping, IPMI 1.5 and 2.0 (RMCP+) session framing, and
IPMI LAN messages (IPMI 2.0 spec §13.6-13.8, §22; DSP0136 for ASF).

Pure functions and small records; nothing here knows about sessions or the machine. Every parser
raises `Malformed` on bad input, which the server turns into a dropped datagram.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

RMCP_VERSION = 0x06
RMCP_CLASS_ASF = 0x06
RMCP_CLASS_IPMI = 0x07
ASF_IANA = 4542
ASF_PING, ASF_PONG = 0x80, 0x40

AUTH_NONE, AUTH_MD2, AUTH_MD5, AUTH_PASSWORD, AUTH_OEM, AUTH_RMCPP = 0, 1, 2, 4, 5, 6

PAYLOAD_IPMI = 0x00
PAYLOAD_SOL = 0x01
PAYLOAD_OEM = 0x02
PAYLOAD_OPEN_REQ, PAYLOAD_OPEN_RSP = 0x10, 0x11
PAYLOAD_RAKP1, PAYLOAD_RAKP2, PAYLOAD_RAKP3, PAYLOAD_RAKP4 = 0x12, 0x13, 0x14, 0x15

BMC_ADDR = 0x20
MAX_DATAGRAM = 1024  # a legitimate IPMI LAN request is < 300 bytes


class Malformed(ValueError):
    """A datagram that is not a well-formed packet; dropped."""


def checksum(data: bytes) -> int:
    return -sum(data) & 0xFF


@dataclass(frozen=True, slots=True)
class Request:
    """An IPMI LAN request message (§13.8)."""

    netfn: int
    cmd: int
    data: bytes
    rq_addr: int
    rq_seq: int
    rq_lun: int
    rs_lun: int

    @classmethod
    def parse(cls, msg: bytes) -> Request:
        if len(msg) < 7:
            raise Malformed("IPMI message shorter than its header")
        if checksum(msg[0:2]) != msg[2]:
            raise Malformed("bad IPMI header checksum")
        if checksum(msg[3:-1]) != msg[-1]:
            raise Malformed("bad IPMI data checksum")
        netfn, rs_lun = msg[1] >> 2, msg[1] & 3
        if netfn & 1:
            raise Malformed("a response where a request was expected")
        return cls(netfn, msg[5], bytes(msg[6:-1]), msg[3], msg[4] >> 2, msg[4] & 3, rs_lun)

    def response(self, code: int, data: bytes = b"") -> bytes:
        head = bytes((self.rq_addr, ((self.netfn | 1) << 2) | self.rq_lun))
        body = bytes((BMC_ADDR, (self.rq_seq << 2) | self.rs_lun, self.cmd, code)) + data
        return head + bytes((checksum(head),)) + body + bytes((checksum(body),))


def rmcp_header(seq: int = 0xFF, cls: int = RMCP_CLASS_IPMI) -> bytes:
    return bytes((RMCP_VERSION, 0, seq, cls))


def split_rmcp(datagram: bytes) -> tuple[int, int, bytes]:
    """(RMCP class, RMCP sequence, the rest) of a datagram."""
    if len(datagram) > MAX_DATAGRAM:
        raise Malformed("oversized datagram")
    if len(datagram) < 5 or datagram[0] != RMCP_VERSION:
        raise Malformed("not RMCP")
    return datagram[3] & 0x1F, datagram[2], datagram[4:]


def asf_pong(body: bytes, rmcp_seq: int) -> bytes | None:
    """The Presence Pong for an ASF Presence Ping (so `ipmitool -I lan` and rmcpping see a BMC)."""
    if len(body) < 8:
        raise Malformed("short ASF message")
    iana, mtype, tag, _, _ = struct.unpack(">IBBBB", body[:8])
    if iana != ASF_IANA or mtype != ASF_PING:
        return None
    # Supported entities 0x81: IPMI supported, ASF version 1.0; no interactions.
    data = struct.pack(">II", ASF_IANA, 0) + bytes((0x81, 0x00)) + bytes(6)
    return (
        rmcp_header(rmcp_seq, RMCP_CLASS_ASF)
        + struct.pack(">IBBBB", ASF_IANA, ASF_PONG, tag, 0, len(data))
        + data
    )


@dataclass(frozen=True, slots=True)
class V15:
    """An IPMI 1.5 session packet (§22.12 / IPMI 1.5 §6.11)."""

    authtype: int
    seq: int
    session_id: int
    authcode: bytes
    message: bytes

    @classmethod
    def parse(cls, body: bytes) -> V15:
        if len(body) < 10:
            raise Malformed("short IPMI 1.5 session header")
        authtype = body[0] & 0x0F
        seq, sid = struct.unpack("<II", body[1:9])
        pos, authcode = 9, b""
        if authtype != AUTH_NONE:
            authcode, pos = body[9:25], 25
            if len(authcode) != 16:
                raise Malformed("short auth code")
        if len(body) <= pos:
            raise Malformed("no message length")
        length = body[pos]
        message = body[pos + 1 : pos + 1 + length]
        if len(message) != length:
            raise Malformed("message shorter than its length")
        return cls(authtype, seq, sid, authcode, message)


def build_v15(authtype: int, seq: int, session_id: int, authcode: bytes, message: bytes) -> bytes:
    head = bytes((authtype,)) + struct.pack("<II", seq, session_id)
    if authtype != AUTH_NONE:
        head += authcode
    return rmcp_header() + head + bytes((len(message),)) + message


@dataclass(frozen=True, slots=True)
class V20:
    """An IPMI 2.0 RMCP+ packet (§13.6). `signed` is what the integrity code covers."""

    encrypted: bool
    authenticated: bool
    payload_type: int
    session_id: int
    seq: int
    payload: bytes
    trailer: bytes  # integrity pad, pad length, next header, auth code (authenticated only)
    signed: bytes

    @classmethod
    def parse(cls, body: bytes) -> V20:
        if len(body) < 12 or body[0] & 0x0F != AUTH_RMCPP:
            raise Malformed("short RMCP+ session header")
        ptype = body[1]
        pos = 2
        if ptype & 0x3F == PAYLOAD_OEM:
            pos += 6  # OEM IANA + OEM payload id; we answer no OEM payloads, but parse past them
        if len(body) < pos + 10:
            raise Malformed("short RMCP+ session header")
        sid, seq, length = struct.unpack("<IIH", body[pos : pos + 10])
        pos += 10
        payload = body[pos : pos + length]
        if len(payload) != length:
            raise Malformed("payload shorter than its length")
        trailer = body[pos + length :]
        return cls(bool(ptype & 0x80), bool(ptype & 0x40), ptype & 0x3F, sid, seq, payload, trailer, body)

    def split_trailer(self, icv_len: int) -> tuple[bytes, bytes] | None:
        """(signed bytes, auth code) of an authenticated packet, or None if the trailer is wrong."""
        t = self.trailer
        if len(t) < icv_len + 2 or t[-icv_len - 1] != 0x07:
            return None
        pad_len = t[-icv_len - 2]
        if pad_len + 2 + icv_len != len(t) or pad_len > 3:
            return None
        return self.signed[: len(self.signed) - icv_len], self.signed[len(self.signed) - icv_len :]


def build_v20(
    payload_type: int,
    session_id: int,
    seq: int,
    payload: bytes,
    *,
    encrypted: bool = False,
    sign: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """An RMCP+ packet; `sign` (a callable bytes -> auth code) makes it authenticated."""
    ptype = payload_type | (0x80 if encrypted else 0) | (0x40 if sign else 0)
    body = bytes((AUTH_RMCPP, ptype)) + struct.pack("<IIH", session_id, seq, len(payload)) + payload
    if sign:
        pad = (4 - (len(body) + 2) % 4) % 4
        body += b"\xff" * pad + bytes((pad, 0x07))
        body += sign(body)
    return rmcp_header() + body
