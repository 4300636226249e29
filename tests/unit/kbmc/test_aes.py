"""AES-CBC-128 for IPMI 2.0 confidentiality (vmbmc/kbmc/aes.py): the libcrypto binding and the
cryptography fallback give NIST's answers and each other's."""

from __future__ import annotations

import os

import pytest

from vmbmc.kbmc import aes

# NIST SP 800-38A, F.2.1 / F.2.2 (CBC-AES128)
KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
PLAIN = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
CIPHER = bytes.fromhex(
    "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
    "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"
)

BACKENDS = {"libcrypto": aes._libcrypto_cbc(), "cryptography": aes._cryptography_cbc()}


def test_the_kbmc_uses_the_loaded_libcrypto() -> None:
    assert aes.cbc.__qualname__.startswith("_libcrypto_cbc")


@pytest.mark.parametrize("backend", BACKENDS)
def test_nist_vectors(backend: str) -> None:
    cbc = BACKENDS[backend]
    assert cbc(KEY, IV, PLAIN, True) == CIPHER
    assert cbc(KEY, IV, CIPHER, False) == PLAIN


def test_backends_agree() -> None:
    for size in range(0, 16 * 40, 16):
        key, iv, data = os.urandom(16), os.urandom(16), os.urandom(size)
        sealed = BACKENDS["libcrypto"](key, iv, data, True)
        assert sealed == BACKENDS["cryptography"](key, iv, data, True)
        assert BACKENDS["libcrypto"](key, iv, sealed, False) == data


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("key", "iv", "data"), [(b"k" * 15, IV, PLAIN), (KEY, b"i" * 8, PLAIN), (KEY, IV, b"x" * 17)]
)
def test_wrong_sizes_are_refused(backend: str, key: bytes, iv: bytes, data: bytes) -> None:
    with pytest.raises(ValueError):
        BACKENDS[backend](key, iv, data, True)
