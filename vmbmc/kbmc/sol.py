"""Serial over LAN (IPMI 2.0 §15, §24): payload type 1 of an RMCP+ session, bridged to the VM's
serial console through the machine (`Machine.open_console`), never to KubeVirt directly.

- Commands: Activate / Deactivate Payload, Get Payload Activation Status, Get Channel Payload
  Support and Version (NetFn App), Get / Set SOL Configuration Parameters (NetFn Transport).
- One SOL session per BMC (instance capacity 1): a second Activate gets 80h "already active on
  another session"; Deactivate Payload from any session of enough privilege frees it.
- RMCP+ only (a payload cannot travel in an IPMI 1.5 session), always authenticated and encrypted
  with the session's cipher suite (3 or 17): the SOL authentication parameter forces both.
- Packets: sequence numbers 1-15 (0: an acknowledgement without data), one unacknowledged packet at
  a time, retransmitted every retry interval up to the retry count; a (partial) ACK or a NACK hands
  the unaccepted bytes back to be sent again. Output is accumulated for the character accumulate
  interval or until the send threshold is reached, as the parameters say. A retransmitted inbound
  packet is acknowledged again but not typed twice.
- A break request cannot reach the guest: KubeVirt's console stream carries bytes only. It is
  acknowledged (the packet's characters are accepted) and logged.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

from vmbmc.kbmc import wire
from vmbmc.kbmc.commands import (
    CC_BAD_LENGTH,
    CC_INSUFFICIENT_PRIV,
    CC_INVALID_FIELD,
    CC_NOT_NOW,
    CC_OK,
    CC_PARAM_UNSUPPORTED,
)
from vmbmc.kbmc.sessions import Priv, Session, SessionTable
from vmbmc.kbmc.wire import Request
from vmbmc.machine import errors
from vmbmc.machine.api import Machine
from vmbmc.machine.console import Console, ConsoleState

log = logging.getLogger("vmbmc.kbmc.sol")

NETFN_APP, NETFN_TRANSPORT = 0x06, 0x0C
PAYLOAD_SOL = wire.PAYLOAD_SOL
CHANNEL, CURRENT_CHANNEL = 0x01, 0x0E

# Activate / Deactivate Payload completion codes (IPMI 2.0 §24.1, §24.2)
CC_ALREADY_ACTIVE = 0x80  # activate: active on another session; deactivate: already deactivated
CC_PAYLOAD_DISABLED = 0x81
CC_READ_ONLY = 0x82  # Set SOL Configuration Parameters: read-only parameter

MAX_PAYLOAD = 200  # bytes of SOL payload each way (4 header bytes + characters)
MAX_PENDING = 64 * 1024  # guest output waiting for the console; beyond it the oldest is dropped
WATCHDOG = 2.0  # seconds between checks that the SOL session's IPMI session still exists

# Operation (console → BMC) and status (BMC → console) bits of byte 4
NACK = 0x40
OP_BREAK = 0x10
ST_UNAVAILABLE = 0x20
ST_DEACTIVATING = 0x10

PARAM_REVISION = 0x11
BIT_RATES = {0x00, 0x06, 0x07, 0x08, 0x09, 0x0A}  # serial default, 9600 ... 115200


@dataclass
class SolConfig:
    """SOL configuration parameters (IPMI 2.0 §26.3), kept for the life of the BMC process."""

    set_in_progress: int = 0
    enabled: bool = True
    privilege: Priv = Priv.OPERATOR
    accumulate_interval: int = 10  # 5 ms units: 50 ms
    send_threshold: int = 64  # characters
    retry_count: int = 7
    retry_interval: int = 20  # 10 ms units: 200 ms
    bit_rate_nv: int = 0x0A  # 115200, the speed guests usually give ttyS0 (no effect on a virtual line)
    bit_rate: int = 0x0A

    @property
    def auth_byte(self) -> int:
        return 0xC0 | self.privilege  # force encryption and authentication: always so here

    def accumulate_seconds(self) -> float:
        return self.accumulate_interval * 0.005

    def retry_seconds(self) -> float:
        return self.retry_interval * 0.010


class SolSession:
    """The active SOL payload instance: one IPMI session, one console."""

    def __init__(self, owner: SolPayload, session: Session) -> None:
        self.owner, self.session = owner, session
        self.console: Console | None = None
        self.pending = bytearray()
        self.out_seq = 0
        self.outstanding: tuple[int, bytes] | None = None
        self.retries = 0
        self.retry_timer: asyncio.TimerHandle | None = None
        self.accumulate_timer: asyncio.TimerHandle | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.in_seq = 0  # the last inbound packet with data, and how many bytes of it were taken
        self.in_accepted = 0
        self.ended = False
        self.broke = False
        self.console_state: ConsoleState | None = None

    # --- guest → console ---------------------------------------------------------------------
    def output(self, data: bytes) -> None:
        if self.ended:
            return
        self.pending += data
        if len(self.pending) > MAX_PENDING:
            del self.pending[: len(self.pending) - MAX_PENDING]
        self._maybe_flush()

    def note(self, text: str) -> None:
        self.output(f"\r\n[vmbmc SOL: {text}]\r\n".encode())

    def on_state(self, state: ConsoleState, detail: str) -> None:
        vm = self.owner.machine.vm
        if state is ConsoleState.WAITING:
            self.note(f"{vm} is not running; its serial console appears when it powers on")
        elif state is ConsoleState.REFUSED:
            self.note(f"the serial console of {vm} cannot be opened: {detail}")

    def _maybe_flush(self) -> None:
        if self.outstanding is not None or not self.pending:
            return
        if len(self.pending) >= self.owner.config.send_threshold:
            self._flush()
        elif self.accumulate_timer is None:
            self.accumulate_timer = self.owner.loop().call_later(
                self.owner.config.accumulate_seconds(), self._flush
            )

    def _flush(self) -> None:
        if self.accumulate_timer is not None:
            self.accumulate_timer.cancel()
            self.accumulate_timer = None
        if self.ended or self.outstanding is not None or not self.pending:
            return
        chunk = bytes(self.pending[: MAX_PAYLOAD - 4])
        del self.pending[: len(chunk)]
        self.out_seq = self.out_seq % 15 + 1
        self.outstanding = (self.out_seq, chunk)
        self.retries = 0
        self._transmit()

    def _transmit(self) -> None:
        assert self.outstanding is not None
        seq, chunk = self.outstanding
        self.owner.send(self.session, bytes((seq, 0, 0, 0)) + chunk)
        self.retry_timer = self.owner.loop().call_later(self.owner.config.retry_seconds(), self._retry)

    def _retry(self) -> None:
        self.retry_timer = None
        if self.ended or self.outstanding is None:
            return
        if self.retries >= self.owner.config.retry_count:
            # The console did not acknowledge: the packet is lost, as on a serial line; go on.
            log.info("SOL packet not acknowledged, dropped", extra={"client": self.session.client[0]})
            self.outstanding = None
            self._maybe_flush()
            return
        self.retries += 1
        self._transmit()

    def acknowledged(self, seq: int, accepted: int, nack: bool) -> None:
        if self.outstanding is None or self.outstanding[0] != seq:
            return  # an ACK of an older packet (a retransmit crossed it)
        chunk = self.outstanding[1]
        self.outstanding = None
        if self.retry_timer is not None:
            self.retry_timer.cancel()
            self.retry_timer = None
        taken = 0 if nack else min(accepted, len(chunk))
        if taken < len(chunk):
            self.pending[:0] = chunk[taken:]
        if nack:  # the console cannot take characters now: try again after the retry interval
            self.retry_timer = self.owner.loop().call_later(self.owner.config.retry_seconds(), self._flush)
            return
        self._maybe_flush()

    # --- console → guest ---------------------------------------------------------------------
    def typed(self, seq: int, op: int, data: bytes) -> bytes | None:
        """An inbound packet's characters; the ACK to send (payload), or None."""
        if op & OP_BREAK and not self.broke:
            self.broke = True  # logged once per SOL session
            log.info("SOL break requested: KubeVirt's console cannot send a break", extra=self._extra())
        if seq == 0:
            return None
        if seq == self.in_seq and data:
            accepted = self.in_accepted  # a retransmit: acknowledged again, not typed twice
        else:
            if data and self.console is not None:
                self.console.write(data)
            self.in_seq, self.in_accepted = seq, len(data)
            accepted = len(data)
        status = 0 if self._connected() else ST_UNAVAILABLE
        return bytes((0, seq, accepted, status))

    def _connected(self) -> bool:
        return self.console is not None and self.console_state is ConsoleState.CONNECTED

    def _extra(self) -> dict[str, object]:
        return {"client": self.session.client[0], "user": self.session.user, "vm": self.owner.machine.vm}

    # --- life --------------------------------------------------------------------------------
    def start(self) -> None:
        def state(st: ConsoleState, detail: str) -> None:
            self.console_state = st
            self.on_state(st, detail)

        self.console = self.owner.machine.open_console(self.output, state)
        self.watchdog = self.owner.loop().call_later(WATCHDOG, self._check)

    def _check(self) -> None:
        self.watchdog = None
        if self.ended:
            return
        s = self.owner.table.get(self.session.id)
        if s is None or not s.active:
            log.info("SOL deactivated: its session ended", extra=self._extra())
            self.owner.end(tell=False)
            return
        self.watchdog = self.owner.loop().call_later(WATCHDOG, self._check)

    def stop(self, *, tell: bool) -> None:
        if self.ended:
            return
        if tell:  # the console learns that another session took SOL away (status: deactivating)
            self.out_seq = self.out_seq % 15 + 1
            self.owner.send(self.session, bytes((self.out_seq, 0, 0, ST_DEACTIVATING)))
        self.ended = True
        for timer in (self.retry_timer, self.accumulate_timer, self.watchdog):
            if timer is not None:
                timer.cancel()
        if self.console is not None:
            self.console.close()
            self.console = None


Sender = Callable[[bytes, tuple[str, int]], None]


class SolPayload:
    """SOL of one BMC: its configuration, its commands and the one active SOL session."""

    COMMANDS: dict[tuple[int, int], str] = {
        (NETFN_APP, 0x48): "Activate Payload",
        (NETFN_APP, 0x49): "Deactivate Payload",
        (NETFN_APP, 0x4A): "Get Payload Activation Status",
        (NETFN_APP, 0x4E): "Get Channel Payload Support",
        (NETFN_APP, 0x4F): "Get Channel Payload Version",
        (NETFN_TRANSPORT, 0x21): "Set SOL Configuration Parameters",
        (NETFN_TRANSPORT, 0x22): "Get SOL Configuration Parameters",
    }

    def __init__(
        self, machine: Machine, table: SessionTable, sender: Sender, port: Callable[[], int]
    ) -> None:
        self.machine, self.table = machine, table
        self._sender, self._port = sender, port
        self.config = SolConfig()
        self.active: SolSession | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def send(self, s: Session, payload: bytes) -> None:
        keys = s.keys
        if keys is None:
            return
        datagram = wire.build_v20(
            PAYLOAD_SOL,
            s.peer_id,
            s.next_out_seq(),
            keys.encrypt(payload),
            encrypted=True,
            sign=keys.auth_code,
        )
        self._sender(datagram, s.client)

    def end(self, *, tell: bool) -> None:
        if self.active is not None:
            self.active.stop(tell=tell)
            self.active = None

    def _current(self) -> SolSession | None:
        """The active SOL session, if its IPMI session still exists."""
        sol = self.active
        if sol is not None and self.table.get(sol.session.id) is None:
            self.end(tell=False)
        return self.active

    # --- inbound SOL packets -------------------------------------------------------------------
    def receive(self, s: Session, payload: bytes) -> bytes | None:
        """An authenticated, decrypted SOL packet of session `s`; the SOL payload to answer with."""
        sol = self._current()
        if sol is None or sol.session is not s or len(payload) < 4:
            return None
        seq, ack, accepted, op = payload[0] & 0x0F, payload[1] & 0x0F, payload[2], payload[3]
        if ack:
            sol.acknowledged(ack, accepted, bool(op & NACK))
        return sol.typed(seq, op, payload[4:])

    # --- commands ------------------------------------------------------------------------------
    def command(self, s: Session, req: Request) -> tuple[str, int, bytes]:
        name = self.COMMANDS[(req.netfn, req.cmd)]
        handler = {
            0x48: self._activate,
            0x49: self._deactivate,
            0x4A: self._activation_status,
            0x4E: self._payload_support,
            0x4F: self._payload_version,
            0x21: self._set_config,
            0x22: self._get_config,
        }[req.cmd]
        try:
            code, data = handler(s, req.data)
        except errors.MachineError as err:
            log.info("SOL refused by the machine", extra={"command": name, "reason": err.message})
            code, data = CC_PAYLOAD_DISABLED, b""
        return name, code, data

    def _sol_instance(self, data: bytes) -> int | None:
        """Completion code for a payload type / instance that is not SOL instance 1, else None."""
        if data[0] & 0x3F != PAYLOAD_SOL or data[1] & 0x0F != 1:
            return CC_INVALID_FIELD
        return None

    def _activate(self, s: Session, data: bytes) -> tuple[int, bytes]:
        if len(data) != 6:
            return CC_BAD_LENGTH, b""
        if not s.v2:
            return CC_NOT_NOW, b""  # payloads travel in RMCP+ sessions only (IPMI 2.0 §24.1)
        bad = self._sol_instance(data)
        if bad is not None:
            return bad, b""
        if s.priv < self.config.privilege:
            return CC_INSUFFICIENT_PRIV, b""
        if not self.config.enabled:
            return CC_PAYLOAD_DISABLED, b""
        if self._current() is not None:
            return CC_ALREADY_ACTIVE, b""
        sol = SolSession(self, s)
        sol.start()  # raises NotSupported where the machine has no console
        self.active = sol
        log.info("SOL activated", extra=sol._extra())
        return CC_OK, (
            bytes(4)  # auxiliary data: no test mode
            + struct.pack("<HHHH", MAX_PAYLOAD, MAX_PAYLOAD, self._port(), 0xFFFF)  # in, out, port, no VLAN
        )

    def _deactivate(self, s: Session, data: bytes) -> tuple[int, bytes]:
        if len(data) != 6:
            return CC_BAD_LENGTH, b""
        bad = self._sol_instance(data)
        if bad is not None:
            return bad, b""
        sol = self._current()
        if sol is None:
            return CC_ALREADY_ACTIVE, b""  # 80h: payload already deactivated
        if sol.session is not s and s.priv < self.config.privilege:
            return CC_INSUFFICIENT_PRIV, b""
        log.info("SOL deactivated", extra={**sol._extra(), "by": s.client[0]})
        self.end(tell=sol.session is not s)
        return CC_OK, b""

    def _activation_status(self, s: Session, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_BAD_LENGTH, b""
        if data[0] & 0x3F != PAYLOAD_SOL:
            return CC_INVALID_FIELD, b""
        return CC_OK, bytes((1, 0x01 if self._current() is not None else 0x00, 0x00))

    def _channel(self, byte: int) -> bool:
        return byte & 0x0F in (CHANNEL, CURRENT_CHANNEL)

    def _payload_support(self, s: Session, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_BAD_LENGTH, b""
        if not self._channel(data[0]):
            return CC_INVALID_FIELD, b""
        # IPMI and SOL; the session set-up payloads 10h-15h; no OEM payloads.
        return CC_OK, bytes((0x03, 0x00, 0x3F, 0x00, 0x00, 0x00, 0x00, 0x00))

    def _payload_version(self, s: Session, data: bytes) -> tuple[int, bytes]:
        if len(data) != 2:
            return CC_BAD_LENGTH, b""
        if not self._channel(data[0]):
            return CC_INVALID_FIELD, b""
        if data[1] not in (0x00, PAYLOAD_SOL):
            return 0x80, b""  # payload type not available on this channel
        return CC_OK, b"\x10"  # format version 1.0

    def _get_config(self, s: Session, data: bytes) -> tuple[int, bytes]:
        if len(data) != 4:
            return CC_BAD_LENGTH, b""
        if not self._channel(data[0]):
            return CC_INVALID_FIELD, b""
        if data[0] & 0x80:
            return CC_OK, bytes((PARAM_REVISION,))  # the revision only
        value = self._param(data[1])
        if value is None:
            return CC_PARAM_UNSUPPORTED, b""
        return CC_OK, bytes((PARAM_REVISION,)) + value

    def _param(self, param: int) -> bytes | None:
        c = self.config
        values = {
            0: bytes((c.set_in_progress,)),
            1: bytes((0x01 if c.enabled else 0x00,)),
            2: bytes((c.auth_byte,)),
            3: bytes((c.accumulate_interval, c.send_threshold)),
            4: bytes((c.retry_count, c.retry_interval)),
            5: bytes((c.bit_rate_nv,)),
            6: bytes((c.bit_rate,)),
            7: bytes((CHANNEL,)),
            8: struct.pack("<H", self._port()),
        }
        return values.get(param)

    def _set_config(self, s: Session, data: bytes) -> tuple[int, bytes]:
        if s.priv < Priv.ADMIN:
            return CC_INSUFFICIENT_PRIV, b""
        if len(data) < 3:
            return CC_BAD_LENGTH, b""
        if not self._channel(data[0]):
            return CC_INVALID_FIELD, b""
        param, value, c = data[1], data[2:], self.config
        lengths = {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 1, 6: 1}
        if param in (7, 8):
            return CC_READ_ONLY, b""  # SOL travels on the IPMI channel and port, nowhere else
        if param not in lengths:
            return CC_PARAM_UNSUPPORTED, b""
        if len(value) != lengths[param]:
            return CC_BAD_LENGTH, b""
        v = value[0]
        if param == 0:
            c.set_in_progress = v & 0x03
        elif param == 1:
            c.enabled = bool(v & 0x01)
        elif param == 2:
            # Encryption and authentication cannot be turned off: every packet is both here.
            if v & 0xC0 != 0xC0 or not Priv.USER <= v & 0x0F <= Priv.ADMIN:
                return CC_INVALID_FIELD, b""
            c.privilege = Priv(v & 0x0F)
        elif param == 3:
            if not value[0] or not value[1]:
                return CC_INVALID_FIELD, b""
            c.accumulate_interval, c.send_threshold = value[0], value[1]
        elif param == 4:
            c.retry_count, c.retry_interval = value[0] & 0x07, value[1]
        else:
            if v & 0x0F not in BIT_RATES:
                return CC_INVALID_FIELD, b""
            if param == 5:
                c.bit_rate_nv = v & 0x0F
            else:
                c.bit_rate = v & 0x0F
        return CC_OK, b""
