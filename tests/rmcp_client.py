"""A small RMCP+ (IPMI 2.0) console for negative tests, written from the IPMI 2.0 spec with hmac and
cryptography only, independently of vmbmc.kbmc.crypto, so it also checks the BMC's arithmetic.

It sends through any `transport(datagram) -> reply or None`: a LanChannel in-process, or a UDP
socket (`udp_transport`). Every step is explicit so a test can stop, corrupt or repeat one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

Transport = Callable[[bytes], bytes | None]

RMCP = bytes((0x06, 0x00, 0xFF, 0x07))
OPEN_REQ, OPEN_RSP, RAKP1, RAKP2, RAKP3, RAKP4 = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
# suite: (auth algorithm, integrity algorithm, hash, RAKP 4 ICV bytes, packet ICV bytes)
SUITES = {3: (0x01, 0x01, "sha1", 12, 12), 17: (0x03, 0x04, "sha256", 16, 16)}


def udp_transport(host: str, port: int, timeout: float = 5.0, source: str = "127.0.0.1") -> Transport:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(timeout)

    def send(datagram: bytes) -> bytes | None:
        sock.sendto(datagram, (host, port))
        try:
            return sock.recv(2048)
        except TimeoutError:
            return None

    return send


def checksum(data: bytes) -> int:
    return -sum(data) & 0xFF


def ipmi_message(netfn: int, cmd: int, data: bytes = b"", rq_seq: int = 1) -> bytes:
    head = bytes((0x20, netfn << 2))
    body = bytes((0x81, rq_seq << 2, cmd)) + data
    return head + bytes((checksum(head),)) + body + bytes((checksum(body),))


def packet(ptype: int, sid: int, seq: int, payload: bytes) -> bytes:
    return RMCP + bytes((0x06, ptype)) + struct.pack("<IIH", sid, seq, len(payload)) + payload


def parse(reply: bytes) -> tuple[int, int, int, bytes, bytes]:
    """(payload type with flags, session id, sequence, payload, trailer) of an RMCP+ reply."""
    ptype = reply[5]
    sid, seq, length = struct.unpack("<IIH", reply[6:16])
    return ptype, sid, seq, reply[16 : 16 + length], reply[16 + length :]


@dataclass
class Console:
    transport: Transport
    user: str
    password: str
    suite: int = 3
    role: int = 0x14  # administrator, name-only lookup
    console_sid: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "little") | 1)
    bmc_sid: int = 0
    console_rand: bytes = field(default_factory=lambda: os.urandom(16))
    bmc_rand: bytes = b""
    guid: bytes = b""
    sik: bytes = b""
    k1: bytes = b""
    k2: bytes = b""
    seq: int = 0

    @property
    def digest(self) -> str:
        return SUITES[self.suite][2]

    def mac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.digest).digest()

    def kuid(self) -> bytes:
        return self.password.encode().ljust(20, b"\0")

    def user_field(self) -> bytes:
        return bytes((self.role, len(self.user))) + self.user.encode()

    # --- the four set-up messages ------------------------------------------------------------
    def open_request(self, auth: int | None = None, integrity: int | None = None, conf: int = 1) -> bytes:
        a, i = SUITES[self.suite][:2]
        body = bytes((0, 0, 0, 0)) + struct.pack("<I", self.console_sid)
        body += bytes((0, 0, 0, 8, a if auth is None else auth, 0, 0, 0))
        body += bytes((1, 0, 0, 8, i if integrity is None else integrity, 0, 0, 0))
        body += bytes((2, 0, 0, 8, conf, 0, 0, 0))
        return packet(OPEN_REQ, 0, 0, body)

    def open(self) -> int:
        """Open Session; returns the RMCP+ status code."""
        reply = self.transport(self.open_request())
        assert reply is not None, "no Open Session Response"
        payload = parse(reply)[3]
        if payload[1] == 0:
            self.bmc_sid = struct.unpack("<I", payload[8:12])[0]
        return payload[1]

    def rakp1_request(self) -> bytes:
        body = bytes((0, 0, 0, 0)) + struct.pack("<I", self.bmc_sid) + self.console_rand
        body += bytes((self.role, 0, 0, len(self.user))) + self.user.encode()
        return packet(RAKP1, 0, 0, body)

    def rakp1(self) -> bytes | None:
        """RAKP 1; returns the RAKP 2 payload (None: no answer)."""
        reply = self.transport(self.rakp1_request())
        if reply is None:
            return None
        payload = parse(reply)[3]
        if payload[1] == 0:
            self.bmc_rand, self.guid = payload[8:24], payload[24:40]
        return payload

    def rakp2_code(self) -> bytes:
        """What RAKP 2 must carry (IPMI 2.0 §13.31): HMAC_Kuid(SIDm, SIDc, Rm, Rc, GUIDc, ROLEm,
        ULENGTHm, UNAMEm)."""
        data = struct.pack("<II", self.console_sid, self.bmc_sid) + self.console_rand + self.bmc_rand
        return self.mac(self.kuid(), data + self.guid + self.user_field())

    def rakp3_code(self) -> bytes:
        """HMAC_Kuid(Rc, SIDm, ROLEm, ULENGTHm, UNAMEm) (§13.31)."""
        return self.mac(self.kuid(), self.bmc_rand + struct.pack("<I", self.console_sid) + self.user_field())

    def rakp3_request(self, status: int = 0, code: bytes | None = None) -> bytes:
        body = bytes((0, status, 0, 0)) + struct.pack("<I", self.bmc_sid)
        return packet(RAKP3, 0, 0, body + (self.rakp3_code() if code is None else code))

    def derive(self) -> None:
        """SIK = HMAC_Kg(Rm, Rc, ROLEm, ULENGTHm, UNAMEm) with Kg = Kuid (no BMC key); K1 and K2 are
        HMAC_SIK of 20 bytes of 0x01 and 0x02 (§13.32)."""
        self.sik = self.mac(self.kuid(), self.console_rand + self.bmc_rand + self.user_field())
        self.k1 = self.mac(self.sik, b"\x01" * 20)
        self.k2 = self.mac(self.sik, b"\x02" * 20)

    def rakp3(self, status: int = 0, code: bytes | None = None) -> bytes | None:
        """RAKP 3; returns the RAKP 4 payload (None: no answer)."""
        reply = self.transport(self.rakp3_request(status, code))
        return None if reply is None else parse(reply)[3]

    def rakp4_code(self) -> bytes:
        """HMAC_SIK(Rm, SIDc, GUIDc), truncated (§13.31)."""
        data = self.console_rand + struct.pack("<I", self.bmc_sid) + self.guid
        return self.mac(self.sik, data)[: SUITES[self.suite][3]]

    def login(self) -> None:
        assert self.open() == 0
        rakp2 = self.rakp1()
        assert rakp2 is not None and rakp2[1] == 0, rakp2
        assert hmac.compare_digest(rakp2[40:], self.rakp2_code()), "RAKP 2 HMAC"
        self.derive()
        rakp4 = self.rakp3()
        assert rakp4 is not None and rakp4[1] == 0, rakp4
        assert hmac.compare_digest(rakp4[8:], self.rakp4_code()), "RAKP 4 ICV"

    # --- session packets ---------------------------------------------------------------------
    def encrypt(self, payload: bytes, iv: bytes | None = None) -> bytes:
        """AES-CBC-128 with K2's first 16 bytes; pad 1, 2, ... then the pad length (§13.29)."""
        pad = (15 - len(payload) % 16) % 16
        plain = payload + bytes(range(1, pad + 1)) + bytes((pad,))
        iv = iv or os.urandom(16)
        enc = Cipher(algorithms.AES(self.k2[:16]), modes.CBC(iv)).encryptor()
        return iv + enc.update(plain) + enc.finalize()

    def decrypt(self, data: bytes) -> bytes:
        dec = Cipher(algorithms.AES(self.k2[:16]), modes.CBC(data[:16])).decryptor()
        plain = dec.update(data[16:]) + dec.finalize()
        return plain[: len(plain) - 1 - plain[-1]]

    def signed_packet(self, encrypted_payload: bytes, seq: int, sid: int | None = None) -> bytes:
        body = bytes((0x06, 0xC0)) + struct.pack("<IIH", self.bmc_sid if sid is None else sid, seq,
                                                 len(encrypted_payload))
        body += encrypted_payload
        pad = (4 - (len(body) + 2) % 4) % 4
        body += b"\xff" * pad + bytes((pad, 0x07))
        return RMCP + body + self.mac(self.k1, body)[: SUITES[self.suite][4]]

    def request(self, netfn: int, cmd: int, data: bytes = b"", rq_seq: int = 1) -> bytes:
        """A signed, encrypted request with the next sequence number (not sent)."""
        self.seq += 1
        return self.signed_packet(self.encrypt(ipmi_message(netfn, cmd, data, rq_seq)), self.seq)

    def answer(self, reply: bytes | None) -> bytes | None:
        """The decrypted response message of a session reply, checking its integrity code."""
        if reply is None:
            return None
        ptype, sid, _, payload, trailer = parse(reply)
        assert ptype == 0xC0 and sid == self.console_sid
        icv = SUITES[self.suite][4]
        assert hmac.compare_digest(reply[-icv:], self.mac(self.k1, reply[4:-icv])[:icv]), "reply ICV"
        assert trailer[-icv - 1] == 0x07
        return self.decrypt(payload)


def md5_code(password: str, sid: int, message: bytes, seq: int) -> bytes:
    """IPMI 1.5 MD5 auth code (§22.17.1), for tests of the IPMI 1.5 path."""
    key = password.encode().ljust(16, b"\0")
    return hashlib.md5(key + struct.pack("<I", sid) + message + struct.pack("<I", seq) + key,
                       usedforsecurity=False).digest()
