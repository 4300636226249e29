"""AES-CBC-128 without padding (the IPMI 2.0 confidentiality algorithm; crypto.py adds IPMI's own pad).

Done by the OpenSSL that Python's `ssl` module has already loaded, through ctypes: the kbmc needs
no other cipher, and importing `cryptography` for this one costs ~8 MiB of RSS in every kbmc pod
(docs/kbmc.md, "Memory"). Where that OpenSSL does not export its EVP functions (a Python linked
statically against it), `cryptography` does the same job.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

KEY_SIZE = BLOCK = 16

Cbc = Callable[[bytes, bytes, bytes, bool], bytes]  # (key, iv, data, encrypt) -> data


def _libcrypto_cbc() -> Cbc:
    import _ssl

    lib = ctypes.CDLL(_ssl.__file__)  # its dependencies (libssl, libcrypto) answer dlsym too
    vp, cp, ip = ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)
    lib.EVP_aes_128_cbc.restype = vp
    lib.EVP_aes_128_cbc.argtypes = []
    lib.EVP_CIPHER_CTX_new.restype = vp
    lib.EVP_CIPHER_CTX_new.argtypes = []
    lib.EVP_CipherInit_ex.restype = ctypes.c_int
    lib.EVP_CipherInit_ex.argtypes = [vp, vp, vp, cp, cp, ctypes.c_int]
    lib.EVP_CIPHER_CTX_set_padding.restype = ctypes.c_int
    lib.EVP_CIPHER_CTX_set_padding.argtypes = [vp, ctypes.c_int]
    lib.EVP_CipherUpdate.restype = ctypes.c_int
    lib.EVP_CipherUpdate.argtypes = [vp, ctypes.c_void_p, ip, cp, ctypes.c_int]
    cipher = lib.EVP_aes_128_cbc()
    if not cipher:
        raise OSError("libcrypto has no AES-128-CBC")

    # One cipher context per thread, re-initialised for every call (a new context per call cost a third
    # more); the kbmc does AES on its event loop's thread only, so this is one context, kept for good.
    local = threading.local()

    def cbc(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
        _check(key, iv, data)
        ctx = getattr(local, "ctx", None)
        if ctx is None:
            ctx = local.ctx = lib.EVP_CIPHER_CTX_new()
            if not ctx:
                raise MemoryError("EVP_CIPHER_CTX_new")
        out = ctypes.create_string_buffer(len(data))
        n = ctypes.c_int(0)
        # Without padding and with whole blocks, Update returns every byte: no Final needed.
        if not (
            lib.EVP_CipherInit_ex(ctx, cipher, None, key, iv, 1 if encrypt else 0)
            and lib.EVP_CIPHER_CTX_set_padding(ctx, 0)
            and lib.EVP_CipherUpdate(ctx, out, ctypes.byref(n), data, len(data))
            and n.value == len(data)
        ):
            raise ValueError("AES-CBC failed")
        return out.raw

    return cbc


def _cryptography_cbc() -> Cbc:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def cbc(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
        _check(key, iv, data)
        cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        return ctx.update(data) + ctx.finalize()

    return cbc


def _check(key: bytes, iv: bytes, data: bytes) -> None:
    # The C functions read exactly these sizes: never hand them less.
    if len(key) != KEY_SIZE or len(iv) != BLOCK or len(data) % BLOCK:
        raise ValueError("AES-128-CBC needs a 16-byte key and IV and whole 16-byte blocks")


def _load() -> Cbc:
    try:
        return _libcrypto_cbc()
    except (OSError, AttributeError, ImportError):
        return _cryptography_cbc()


cbc: Cbc = _load()


def encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    return cbc(key, iv, data, True)


def decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    return cbc(key, iv, data, False)
