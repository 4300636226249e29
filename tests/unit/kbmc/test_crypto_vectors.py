"""Known-answer vectors for vmbmc.kbmc.crypto: each expected value is computed here from the IPMI 2.0
spec's formulas with hmac, hashlib and cryptography directly (§13.28-13.32, §22.17.1), on fixed
inputs, and a NIST AES vector checks the test's own AES primitive."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vmbmc.kbmc import crypto

SID_M, SID_C = 0xA1B2C3D4, 0x0BADF00D
RAND_M = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
RAND_C = bytes.fromhex("f0e0d0c0b0a090807060504030201000")
GUID = bytes.fromhex("00112233445566778899aabbccddeeff")
ROLE, USER, PASSWORD = 0x14, b"admin", "vector-password"
KUID = PASSWORD.encode() + bytes(20 - len(PASSWORD))
RAKP = crypto.Rakp(SID_M, SID_C, RAND_M, RAND_C, GUID, ROLE, USER)
NAME = bytes((ROLE, len(USER))) + USER


def h(suite: crypto.CipherSuite, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, getattr(hashlib, suite.digest)).digest()


@pytest.mark.parametrize("suite", crypto.SUITES, ids=lambda s: f"suite{s.id}")
def test_rakp_codes_session_keys(suite: crypto.CipherSuite) -> None:
    # RAKP 2: HMAC_Kuid(SIDm, SIDc, Rm, Rc, GUIDc, ROLEm, ULENGTHm, UNAMEm)
    rakp2 = h(suite, KUID, struct.pack("<II", SID_M, SID_C) + RAND_M + RAND_C + GUID + NAME)
    assert RAKP.rakp2_code(suite, KUID) == rakp2
    # RAKP 3: HMAC_Kuid(Rc, SIDm, ROLEm, ULENGTHm, UNAMEm)
    assert RAKP.rakp3_code(suite, KUID) == h(suite, KUID, RAND_C + struct.pack("<I", SID_M) + NAME)
    # SIK: HMAC_Kg(Rm, Rc, ROLEm, ULENGTHm, UNAMEm), Kg = Kuid when the BMC has no key of its own
    sik = h(suite, KUID, RAND_M + RAND_C + NAME)
    assert RAKP.sik(suite, KUID) == sik
    # RAKP 4: HMAC_SIK(Rm, SIDc, GUIDc), 12 bytes (SHA1-96) or 16 (SHA256-128)
    rakp4 = h(suite, sik, RAND_M + struct.pack("<I", SID_C) + GUID)[: {3: 12, 17: 16}[suite.id]]
    assert RAKP.rakp4_code(suite, sik) == rakp4
    # K1 = HMAC_SIK(20 x 0x01), K2 = HMAC_SIK(20 x 0x02); AES key = K2[:16]
    keys = crypto.SessionKeys.derive(suite, sik)
    assert keys.k1 == h(suite, sik, b"\x01" * 20)
    assert keys.aes_key == h(suite, sik, b"\x02" * 20)[:16]
    # packet integrity: HMAC_K1(packet from the auth type to the next header), truncated
    signed = bytes(range(40))
    assert keys.auth_code(signed) == h(suite, keys.k1, signed)[: suite.icv_len]
    assert len(rakp2) == {3: 20, 17: 32}[suite.id]


def test_pinned_sik_vectors() -> None:
    """The SIKs of the fixed inputs pinned as bytes (computed once with `hmac` from the formula
    above), so a change that broke this file's arithmetic and crypto.py alike is still caught."""
    assert RAKP.sik(crypto.SUITE_3, KUID).hex() == "2d2b7633aabc87b24a6dfea3a7a243074ebf2f26"
    assert RAKP.sik(crypto.SUITE_17, KUID).hex() == (
        "9423e24436606f9cf38996c7225b1d245062de70931d0f852847b4efffcc36af"
    )


def test_aes_cbc_128_payload() -> None:
    # the test's AES primitive against NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt, first block)
    nist_key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    nist_iv = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    enc = Cipher(algorithms.AES(nist_key), modes.CBC(nist_iv)).encryptor()
    block = enc.update(bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")) + enc.finalize()
    assert block.hex() == "7649abac8119b246cee98e9b12e9197d"

    keys = crypto.SessionKeys(crypto.SUITE_3, b"k" * 20, nist_key)
    payload = bytes(range(20))  # 20 bytes: 11 pad bytes 01..0b, then the pad length 0x0b
    plain = payload + bytes(range(1, 12)) + b"\x0b"
    enc = Cipher(algorithms.AES(nist_key), modes.CBC(nist_iv)).encryptor()
    expected = nist_iv + enc.update(plain) + enc.finalize()
    assert keys.decrypt(expected) == payload
    ours = keys.encrypt(payload)
    assert len(ours) == len(expected) and ours[:16] != nist_iv  # a fresh random IV in front
    dec = Cipher(algorithms.AES(nist_key), modes.CBC(ours[:16])).decryptor()
    assert dec.update(ours[16:]) + dec.finalize() == plain
    for size in range(0, 40):  # every pad length round-trips
        assert keys.decrypt(keys.encrypt(bytes(size))) == bytes(size)
    assert keys.decrypt(expected[:-1]) is None and keys.decrypt(expected[:16]) is None


def test_ipmi15_md5_auth_code() -> None:
    key = PASSWORD.encode().ljust(16, b"\0")[:16]
    message = b"\x20\x18\xc8\x81\x04\x3b\x04\x3c"
    expected = hashlib.md5(key + struct.pack("<I", SID_C) + message + struct.pack("<I", 7) + key).digest()
    assert crypto.md5_auth_code(key, SID_C, message, 7) == expected
    assert crypto.password_key("x" * 17, 16) is None and crypto.password_key("x" * 20, 20) == b"x" * 20
