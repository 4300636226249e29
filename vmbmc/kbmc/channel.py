"""The LAN channel's own commands, answered the same with or without a session: Get Channel
Authentication Capabilities, Get Channel Cipher Suites and Get Channel Info (pure)."""

from __future__ import annotations

from vmbmc.kbmc import crypto, wire
from vmbmc.kbmc.commands import CC_BAD_LENGTH, CC_INVALID_FIELD, CC_OK
from vmbmc.kbmc.sessions import Priv

CHANNEL = 0x01
CURRENT_CHANNEL = 0x0E


def auth_capabilities(data: bytes) -> tuple[int, bytes]:
    if len(data) != 2:
        return CC_BAD_LENGTH, b""
    channel, v2 = data[0] & 0x0F, bool(data[0] & 0x80)
    if channel not in (CURRENT_CHANNEL, CHANNEL) or not Priv.CALLBACK <= data[1] & 0x0F <= 5:
        return CC_INVALID_FIELD, b""
    # MD5 only; per-message and user-level authentication on; non-null users only;
    # extended: IPMI 1.5 and 2.0 connections.
    return CC_OK, bytes((CHANNEL, 0x04 | (0x80 if v2 else 0), 0x04, 0x03 if v2 else 0, 0, 0, 0, 0))


def cipher_suites(data: bytes) -> tuple[int, bytes]:
    if len(data) != 3:
        return CC_BAD_LENGTH, b""
    channel = data[0] & 0x0F
    if channel not in (CURRENT_CHANNEL, CHANNEL):
        return CC_INVALID_FIELD, b""
    if data[1] not in (wire.PAYLOAD_IPMI, wire.PAYLOAD_SOL):  # IPMI and SOL payloads only
        return CC_OK, bytes((CHANNEL,))
    if data[2] & 0x80:
        records = b"".join(s.record for s in crypto.SUITES)
    else:  # the algorithms, each once
        algos = [s.auth for s in crypto.SUITES] + [0x40 | s.integrity for s in crypto.SUITES]
        algos += [0x80 | s.confidentiality for s in crypto.SUITES]
        records = bytes(dict.fromkeys(algos))
    index = data[2] & 0x3F
    return CC_OK, bytes((CHANNEL,)) + records[index * 16 : index * 16 + 16]


def channel_info(data: bytes, active_sessions: int) -> tuple[int, bytes]:
    if len(data) != 1:
        return CC_BAD_LENGTH, b""
    if data[0] & 0x0F not in (CURRENT_CHANNEL, CHANNEL):
        return CC_INVALID_FIELD, b""  # one channel: this LAN channel
    sessions = min(active_sessions, 0x3F)
    # 802.3 LAN, IPMB-1.0 protocol, multi-session, IPMI forum IANA 7154, no aux info.
    return CC_OK, bytes((CHANNEL, 0x04, 0x01, 0x80 | sessions)) + (7154).to_bytes(3, "little") + bytes(2)
