"""IPMI authentication and encryption: RAKP (IPMI 2.0 §13.28-13.32), the session keys, the
integrity and confidentiality algorithms of cipher suites 3 and 17, and IPMI 1.5 MD5 auth codes.

Only what the security defaults allow is here: suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) and
suite 17 (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128). No suite 0, no MD2, no straight password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AUTH_RAKP_HMAC_SHA1 = 0x01
AUTH_RAKP_HMAC_SHA256 = 0x03
INTEGRITY_HMAC_SHA1_96 = 0x01
INTEGRITY_HMAC_SHA256_128 = 0x04
CONF_AES_CBC_128 = 0x01


@dataclass(frozen=True, slots=True)
class CipherSuite:
    id: int
    auth: int
    integrity: int
    confidentiality: int
    digest: str  # hashlib name for RAKP, SIK, K1/K2 and integrity
    rakp4_len: int  # bytes of the RAKP4 integrity check value
    icv_len: int  # bytes of a packet's auth code

    def mac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.digest).digest()

    @property
    def record(self) -> bytes:
        """This suite's record in Get Channel Cipher Suites (IPMI 2.0 table 22-19)."""
        return bytes((0xC0, self.id, self.auth, 0x40 | self.integrity, 0x80 | self.confidentiality))


SUITE_3 = CipherSuite(3, AUTH_RAKP_HMAC_SHA1, INTEGRITY_HMAC_SHA1_96, CONF_AES_CBC_128, "sha1", 12, 12)
SUITE_17 = CipherSuite(
    17, AUTH_RAKP_HMAC_SHA256, INTEGRITY_HMAC_SHA256_128, CONF_AES_CBC_128, "sha256", 16, 16
)
SUITES: tuple[CipherSuite, ...] = (SUITE_3, SUITE_17)


def suite_for(auth: int, integrity: int, confidentiality: int) -> CipherSuite | None:
    """The offered suite matching an Open Session proposal exactly, if any."""
    for suite in SUITES:
        if (suite.auth, suite.integrity, suite.confidentiality) == (auth, integrity, confidentiality):
            return suite
    return None


@dataclass(frozen=True, slots=True)
class Rakp:
    """Everything both sides hash during RAKP, in the spec's names (m = console, c = BMC)."""

    console_sid: int
    bmc_sid: int
    console_rand: bytes
    bmc_rand: bytes
    bmc_guid: bytes
    role: int  # the whole role byte of RAKP1, name-only bit included
    username: bytes

    def _user(self) -> bytes:
        return bytes((self.role, len(self.username))) + self.username

    def rakp2_code(self, suite: CipherSuite, kuid: bytes) -> bytes:
        data = (
            struct.pack("<II", self.console_sid, self.bmc_sid)
            + self.console_rand
            + self.bmc_rand
            + self.bmc_guid
            + self._user()
        )
        return suite.mac(kuid, data)

    def rakp3_code(self, suite: CipherSuite, kuid: bytes) -> bytes:
        return suite.mac(kuid, self.bmc_rand + struct.pack("<I", self.console_sid) + self._user())

    def sik(self, suite: CipherSuite, kg: bytes) -> bytes:
        return suite.mac(kg, self.console_rand + self.bmc_rand + self._user())

    def rakp4_code(self, suite: CipherSuite, sik: bytes) -> bytes:
        data = self.console_rand + struct.pack("<I", self.bmc_sid) + self.bmc_guid
        return suite.mac(sik, data)[: suite.rakp4_len]


@dataclass(frozen=True, slots=True)
class SessionKeys:
    suite: CipherSuite
    k1: bytes  # integrity key
    aes_key: bytes  # first 16 bytes of K2
    _aes: algorithms.AES = field(init=False, repr=False, compare=False)  # the key, checked once

    def __post_init__(self) -> None:
        object.__setattr__(self, "_aes", algorithms.AES(self.aes_key))

    @classmethod
    def derive(cls, suite: CipherSuite, sik: bytes) -> SessionKeys:
        # Const1/Const2 are 20 bytes whatever the hash (IPMI 2.0 §13.32; ipmitool and FreeIPMI agree).
        k1 = suite.mac(sik, b"\x01" * 20)
        k2 = suite.mac(sik, b"\x02" * 20)
        return cls(suite, k1, k2[:16])

    def auth_code(self, data: bytes) -> bytes:
        return self.suite.mac(self.k1, data)[: self.suite.icv_len]

    def encrypt(self, payload: bytes) -> bytes:
        """AES-CBC-128 with the IPMI pad (1, 2, 3, ..., pad length), IV in front (§13.29)."""
        pad_len = (15 - len(payload) % 16) % 16
        plain = payload + bytes(range(1, pad_len + 1)) + bytes((pad_len,))
        iv = os.urandom(16)
        return iv + _cbc(self._aes, iv, plain, encrypt=True)

    def decrypt(self, data: bytes) -> bytes | None:
        """The payload, or None when the data is not a well-formed encrypted payload."""
        if len(data) < 32 or len(data) % 16:
            return None
        plain = _cbc(self._aes, data[:16], data[16:], encrypt=False)
        pad_len = plain[-1]
        if pad_len > 15 or pad_len >= len(plain):
            return None
        return plain[: len(plain) - 1 - pad_len]


def _cbc(key: algorithms.AES, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    """AES-CBC-128 over whole blocks, no padding of its own (IPMI's pad is in the payload). A new context
    per packet: every packet has its own IV, and cryptography offers no way to reset one."""
    cipher = Cipher(key, modes.CBC(iv))
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def password_key(password: str, size: int) -> bytes | None:
    """The password as an IPMI key, zero-padded to `size` bytes (16 for IPMI 1.5, 20 for 2.0);
    None when it does not fit: such a password cannot be used with that protocol."""
    raw = password.encode()
    if len(raw) > size:
        return None
    return raw.ljust(size, b"\0")


def md5_auth_code(key16: bytes, session_id: int, message: bytes, seq: int) -> bytes:
    """IPMI 1.5 MD5 auth code (§22.17.1): MD5(password, session id, message, sequence, password)."""
    return hashlib.md5(
        key16 + struct.pack("<I", session_id) + message + struct.pack("<I", seq) + key16,
        usedforsecurity=False,
    ).digest()
