"""A minimal WebSocket client (RFC 6455) on asyncio streams, for KubeVirt's console subresource.

What the console needs and no more: the opening handshake over our HTTP client, masked binary
frames out, binary/text frames in (fragments joined), ping answered with pong, close answered and
reported as the end of the stream. No extensions (no compression is offered). A library would cost
the kbmc memory for features the console never uses (docs/kbmc.md, "Memory").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 1 << 20  # a console message is a few KiB at most
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketError(Exception):
    """A broken handshake or frame; the connection is unusable."""


def handshake_headers(subprotocol: str) -> tuple[dict[str, str], str]:
    """The upgrade request's headers and the Sec-WebSocket-Accept value the server must answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Protocol": subprotocol,
    }
    return headers, accept


def check_handshake(headers: dict[str, str], accept: str, subprotocol: str) -> None:
    if headers.get("upgrade", "").lower() != "websocket":
        raise WebSocketError("the server did not switch to WebSocket")
    if headers.get("sec-websocket-accept") != accept:
        raise WebSocketError("wrong Sec-WebSocket-Accept")
    if headers.get("sec-websocket-protocol", subprotocol) != subprotocol:
        raise WebSocketError(f"the server chose another subprotocol: {headers['sec-websocket-protocol']}")


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (clients must mask, RFC 6455 §5.3)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    return head + mask + _mask(payload, mask)


def _mask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    key = int.from_bytes((mask * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


class WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.closed = False

    async def send(self, data: bytes, opcode: int = OP_BINARY) -> None:
        if self.closed:
            raise WebSocketError("closed")
        self.writer.write(frame(opcode, data))
        await self.writer.drain()

    async def _frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        if n > MAX_MESSAGE:
            raise WebSocketError("frame too large")
        mask = await self.reader.readexactly(4) if b1 & 0x80 else b""
        payload = await self.reader.readexactly(n)
        return bool(b0 & 0x80), b0 & 0x0F, _mask(payload, mask) if mask else payload

    async def receive(self) -> bytes | None:
        """The next message's bytes; None once the server closed the stream."""
        parts: list[bytes] = []
        try:
            while True:
                fin, opcode, payload = await self._frame()
                if opcode == OP_PING:
                    await self.send(payload, OP_PONG)
                elif opcode == OP_PONG:
                    continue
                elif opcode == OP_CLOSE:
                    await self.close(payload[:2])
                    return None
                elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                    parts.append(payload)
                    if sum(map(len, parts)) > MAX_MESSAGE:
                        raise WebSocketError("message too large")
                    if fin:
                        return b"".join(parts)
                else:
                    raise WebSocketError(f"unknown opcode {opcode}")
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            self.abort()
            return None

    async def close(self, code: bytes = struct.pack("!H", 1000)) -> None:
        if self.closed:
            return
        with contextlib.suppress(Exception):
            self.writer.write(frame(OP_CLOSE, code))
            await asyncio.wait_for(self.writer.drain(), 1.0)
        self.abort()

    def abort(self) -> None:
        self.closed = True
        self.writer.close()
