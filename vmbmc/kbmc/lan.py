"""The LAN channel of one BMC: datagram in, datagram out.

Session set-up and framing for IPMI 1.5 (Get Session Challenge / Activate Session, MD5 auth codes
on every packet) and IPMI 2.0 RMCP+ (Open Session, RAKP 1-4, cipher suites 3 and 17, integrity
and AES on every packet), the sessionless channel commands, and the channel-level commands of a
session (Set Session Privilege Level, Close Session). Everything else goes to `Commands`.

This replaces pyghmi's server session layer (docs/kbmc.md says why): it has no IPMI 1.5, only
suite 3, drops unknown users silently and re-runs handlers on retransmits.
"""

from __future__ import annotations

import hmac
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vmbmc import metrics
from vmbmc.auth import Credentials, LoginLimiter
from vmbmc.auth.lockout import Turn
from vmbmc.kbmc import channel, crypto, wire
from vmbmc.kbmc.commands import (
    CC_BAD_LENGTH,
    CC_BUSY,
    CC_INSUFFICIENT_PRIV,
    CC_INVALID_COMMAND,
    CC_INVALID_FIELD,
    CC_OK,
    Caller,
    Commands,
    Waiting,
)
from vmbmc.kbmc.sessions import Handshake, Priv, SeqWindow, Session, SessionTable
from vmbmc.kbmc.sol import SolPayload
from vmbmc.kbmc.wire import Malformed, Request
from vmbmc.ratelog import RateLimitedLog

log = logging.getLogger("vmbmc.kbmc.requests")


# RMCP+ status codes (IPMI 2.0 table 13-15)
RS_OK = 0x00
RS_NO_RESOURCES = 0x01
RS_INVALID_SESSION = 0x02
RS_INVALID_ROLE = 0x09
RS_UNAUTHORIZED_NAME = 0x0D
RS_INVALID_ICV = 0x0F
RS_ILLEGAL_PARAMETER = 0x12
RS_NO_CIPHER_MATCH = 0x11

# Activate Session / Get Session Challenge completion codes (IPMI 2.0 §22.15, §22.17)
CC_INVALID_USER = 0x81
CC_NULL_USER = 0x82
CC_INVALID_SESSION_ID = 0x87
CC_PRIV_NOT_AVAILABLE = 0x81  # Set Session Privilege Level

Client = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Later:
    """An answer to send only after `delay` seconds: a failed login from a held address (the
    server schedules it on the event loop; nothing here waits)."""

    datagram: bytes
    delay: float


@dataclass(frozen=True, slots=True)
class Deferred:
    """An answer that waits for KubeVirt (Chassis Control): the server awaits `datagram` (None: send
    nothing, the session has gone) as a task; nothing here waits."""

    datagram: Awaitable[bytes | None]


Answer = bytes | Later | Deferred | None
Message = bytes | Awaitable[bytes] | None  # a response message, now or once KubeVirt has answered


class Identity:
    """The managed system GUID sent in RAKP 2 (16 bytes), or how to find it when a session first needs
    it: a shared kbmc starting a thousand BMCs reads no inventory for it, and the VM is cached by then."""

    __slots__ = ("_guid",)

    def __init__(self, guid: bytes | Callable[[], bytes]) -> None:
        self._guid = guid

    @property
    def guid(self) -> bytes:
        if callable(self._guid):
            self._guid = self._guid()
        return self._guid


def client_text(client: Client) -> str:
    return client[0]


class LanChannel:
    def __init__(
        self,
        commands: Commands,
        credentials: Credentials,
        limiter: LoginLimiter,
        identity: Identity,
        table: SessionTable | None = None,
        sol: SolPayload | None = None,
    ) -> None:
        self.commands = commands
        self.sol = sol
        self.credentials = credentials
        self.limiter = limiter
        self.identity = identity
        self.table = table if table is not None else SessionTable()  # an empty table is falsy
        self.bad = RateLimitedLog(logging.getLogger("vmbmc.kbmc.lan"), on_note=metrics.IPMI_DROPPED.inc)

    # --- entry -----------------------------------------------------------------------------
    def handle(self, datagram: bytes, client: Client) -> Answer:
        try:
            cls, rmcp_seq, body = wire.split_rmcp(datagram)
            if cls == wire.RMCP_CLASS_ASF:
                return wire.asf_pong(body, rmcp_seq)
            if cls != wire.RMCP_CLASS_IPMI:
                raise Malformed(f"RMCP class 0x{cls:02x}")
            if body[0] & 0x0F == wire.AUTH_RMCPP:
                return self._v20(wire.V20.parse(body), client)
            return self._v15(wire.V15.parse(body), client)
        except Malformed as err:
            self.bad.note(client[0], f"dropped a malformed datagram: {err}")
            return None

    def reset(self) -> None:
        """Drop every session (Cold/Warm Reset)."""
        if self.sol is not None:
            self.sol.end(tell=False)
        self.table.clear()

    # --- IPMI 1.5 --------------------------------------------------------------------------
    def _v15(self, pkt: wire.V15, client: Client) -> Answer:
        req = Request.parse(pkt.message)
        if pkt.session_id == 0:
            if pkt.authtype != wire.AUTH_NONE:
                raise Malformed("sessionless packet with an auth code")
            if req.netfn == 0x06 and req.cmd == 0x39:
                return self._challenge(req, client)
            code, data = self._sessionless(req, client, v2=False)
            if code is None:
                return None
            return wire.build_v15(wire.AUTH_NONE, 0, 0, b"", req.response(code, data))
        s = self.table.get(pkt.session_id)
        if s is None or s.v2 or s.client != client:
            self.bad.note(client[0], "dropped an IPMI 1.5 packet for an unknown session")
            return None
        if pkt.authtype != wire.AUTH_MD5:
            self.bad.note(client[0], "dropped an IPMI 1.5 packet without MD5 authentication")
            return None
        if not s.active:
            return self._activate(s, pkt, req, client)
        expected = crypto.md5_auth_code(s.key16, s.id, pkt.message, pkt.seq)
        if not hmac.compare_digest(expected, pkt.authcode):
            self.bad.note(client[0], "dropped an IPMI 1.5 packet with a wrong auth code")
            return None
        if not s.window.accept(pkt.seq):
            self.bad.note(client[0], "dropped a replayed or out-of-window IPMI 1.5 packet")
            return None
        self.table.touch(s)

        def seal(response: bytes) -> bytes:
            seq = s.next_out_seq()
            return wire.build_v15(
                wire.AUTH_MD5, seq, s.id, crypto.md5_auth_code(s.key16, s.id, response, seq), response
            )

        return self._sealed(s, self._in_session(s, req), seal)

    def _challenge(self, req: Request, client: Client) -> Answer:
        """Get Session Challenge (IPMI 1.5): the only sessionless command that can fail a login."""

        def answer(code: int, data: bytes = b"") -> bytes:
            return wire.build_v15(wire.AUTH_NONE, 0, 0, b"", req.response(code, data))

        if len(req.data) != 17:
            return answer(CC_BAD_LENGTH)
        if req.data[0] != wire.AUTH_MD5:  # IPMI 1.5 with MD5 only: none, MD2, straight password refused
            return answer(CC_INVALID_FIELD)
        user = req.data[1:17].rstrip(b"\0").decode("latin-1")
        if not user:  # no credential presented: refused, but not a failed login
            self.bad.note(client[0], "refused the null user name")
            return answer(CC_NULL_USER)
        password = self.credentials.password_for(user)
        if password is None:
            turn = self._turn(client, "lan")
            if turn is None:
                return None
            return self._failed(turn, client, user, "unknown user", answer(CC_INVALID_USER))
        key16 = crypto.password_key(password, 16)
        if key16 is None:
            self.bad.note(client[0], "IPMI 1.5 refused: the password is longer than 16 bytes")
            return answer(CC_INVALID_FIELD)
        s = self.table.create(client, v2=False)
        if s is None:
            return answer(CC_BUSY)
        s.user, s.key16, s.challenge = user, key16, os.urandom(16)
        return answer(CC_OK, struct.pack("<I", s.id) + s.challenge)

    def _activate(self, s: Session, pkt: wire.V15, req: Request, client: Client) -> Answer:
        if (req.netfn, req.cmd) != (0x06, 0x3A):
            self.bad.note(client[0], "dropped a command before Activate Session")
            return None

        def answer(code: int, data: bytes = b"", seq: int = 0) -> bytes:
            msg = req.response(code, data)
            return wire.build_v15(
                wire.AUTH_MD5, seq, s.id, crypto.md5_auth_code(s.key16, s.id, msg, seq), msg
            )

        turn = self._turn(client, "lan")
        if turn is None:
            return None  # the session stays: a retransmit tries again
        expected = crypto.md5_auth_code(s.key16, s.id, pkt.message, pkt.seq)
        if not hmac.compare_digest(expected, pkt.authcode):
            self.table.close(s.id)
            # Answered (real BMCs often stay silent: a 10 s client timeout), late if held.
            return self._failed(
                turn, client, s.user, "wrong password (Activate Session)", answer(CC_INSUFFICIENT_PRIV)
            )
        turn.passed()
        if len(req.data) != 22:
            return answer(CC_BAD_LENGTH)
        authtype, max_priv, challenge, out_seq = (
            req.data[0],
            req.data[1] & 0x0F,
            req.data[2:18],
            req.data[18:22],
        )
        if authtype != wire.AUTH_MD5 or not hmac.compare_digest(challenge, s.challenge):
            return answer(CC_INVALID_FIELD)
        if not Priv.CALLBACK <= max_priv <= Priv.ADMIN:
            return answer(0x86)  # requested privilege level exceeds limit
        inbound = int.from_bytes(os.urandom(4), "little") or 1
        s.max_priv, s.priv = Priv(max_priv), Priv(min(max_priv, Priv.USER))
        self.table.activate(s)
        s.window = SeqWindow(inbound - 1)
        # The answer carries the console's initial outbound number; ours count on from it
        # (FreeIPMI checks this, IPMI 2.0 §22.17).
        s.out_seq = struct.unpack("<I", out_seq)[0]
        self.table.touch(s)
        metrics.IPMI_SESSIONS_OPENED.labels("lan").inc()
        log.info("session opened", extra=self._extra(s, "Activate Session", CC_OK, protocol="lan"))
        return answer(
            CC_OK, bytes((wire.AUTH_MD5,)) + struct.pack("<II", s.id, inbound) + bytes((max_priv,)), s.out_seq
        )

    # --- IPMI 2.0 / RMCP+ ------------------------------------------------------------------
    def _v20(self, pkt: wire.V20, client: Client) -> Answer:
        if pkt.payload_type == wire.PAYLOAD_OPEN_REQ:
            return self._open_session(pkt.payload, client)
        if pkt.payload_type == wire.PAYLOAD_RAKP1:
            return self._rakp1(pkt.payload, client)
        if pkt.payload_type == wire.PAYLOAD_RAKP3:
            return self._rakp3(pkt.payload, client)
        if pkt.payload_type not in (wire.PAYLOAD_IPMI, wire.PAYLOAD_SOL):
            self.bad.note(client[0], f"dropped an unsupported RMCP+ payload type 0x{pkt.payload_type:02x}")
            return None
        if pkt.session_id == 0 and pkt.payload_type == wire.PAYLOAD_IPMI:
            if pkt.encrypted or pkt.authenticated:
                raise Malformed("sessionless packet claims authentication")
            req = Request.parse(pkt.payload)
            code, data = self._sessionless(req, client, v2=True)
            if code is None:
                return None
            return wire.build_v20(wire.PAYLOAD_IPMI, 0, 0, req.response(code, data))
        s = self.table.get(pkt.session_id)
        if s is None or not s.v2 or not s.active or s.client != client or s.keys is None:
            self.bad.note(client[0], "dropped an RMCP+ packet for an unknown session")
            return None
        # Suites 3 and 17 both authenticate and encrypt: anything less is refused.
        split = pkt.split_trailer(s.keys.suite.icv_len) if pkt.authenticated and pkt.encrypted else None
        if split is None or not hmac.compare_digest(s.keys.auth_code(split[0]), split[1]):
            self.bad.note(client[0], "dropped an RMCP+ packet with a missing or wrong integrity code")
            return None
        if not s.window.accept(pkt.seq):
            self.bad.note(client[0], "dropped a replayed or out-of-window RMCP+ packet")
            return None
        plain = s.keys.decrypt(pkt.payload)
        if plain is None:
            self.bad.note(client[0], "dropped an RMCP+ packet that does not decrypt")
            return None
        self.table.touch(s)
        keys = s.keys

        def seal(response: bytes, payload_type: int = wire.PAYLOAD_IPMI) -> bytes:
            return wire.build_v20(
                payload_type,
                s.peer_id,
                s.next_out_seq(),
                keys.encrypt(response),
                encrypted=True,
                sign=keys.auth_code,
            )

        if pkt.payload_type == wire.PAYLOAD_SOL:
            ack = self.sol.receive(s, plain) if self.sol is not None else None
            return None if ack is None else seal(ack, wire.PAYLOAD_SOL)

        return self._sealed(s, self._in_session(s, Request.parse(plain)), seal)

    def _sealed(self, s: Session, message: Message, seal: Callable[[bytes], bytes]) -> Answer:
        """The packet around a response message; one that waits for KubeVirt is sealed when it is in
        (its outbound sequence number taken then), if its session still exists."""
        if message is None or isinstance(message, bytes):
            return None if message is None else seal(message)
        pending = message

        async def later() -> bytes | None:
            response = await pending
            return seal(response) if self.table.get(s.id) is s else None

        return Deferred(later())

    def _open_session(self, p: bytes, client: Client) -> bytes:
        if len(p) != 32:
            raise Malformed("Open Session Request of the wrong length")
        tag, priv, console_id = p[0], p[1] & 0x0F, struct.unpack("<I", p[4:8])[0]

        def answer(status: int, bmc_sid: int = 0, algos: tuple[int, int, int] | None = None) -> bytes:
            # Full length even for a refusal (IPMI 2.0 table 13-10): session id 0 and the proposed
            # algorithms, so scanners (nmap's ipmi-cipher-zero) read the status and give a verdict.
            auth, integrity, conf = algos or (p[12] & 0x3F, p[20] & 0x3F, p[28] & 0x3F)
            out = (
                bytes((tag, status, 0 if status else priv_granted, 0))
                + struct.pack("<II", console_id, bmc_sid)
                + bytes((0, 0, 0, 8, auth, 0, 0, 0))
                + bytes((1, 0, 0, 8, integrity, 0, 0, 0))
                + bytes((2, 0, 0, 8, conf, 0, 0, 0))
            )
            return wire.build_v20(wire.PAYLOAD_OPEN_RSP, 0, 0, out)

        priv_granted = Priv.ADMIN if priv == 0 else priv
        if (p[8], p[16], p[24]) != (0, 1, 2) or not console_id:
            return answer(RS_ILLEGAL_PARAMETER)
        suite = crypto.suite_for(p[12] & 0x3F, p[20] & 0x3F, p[28] & 0x3F)
        if suite is None:  # suite 0 and every other proposal: refused, not silently upgraded
            self.bad.note(client[0], "refused an RMCP+ session: no matching cipher suite")
            return answer(RS_NO_CIPHER_MATCH)
        if priv > Priv.ADMIN:
            return answer(RS_INVALID_ROLE)
        old = self.table.find_handshake(client, console_id)
        if old is not None:
            self.table.close(old.id)  # a retransmit, or the client restarted its set-up
        s = self.table.create(client, v2=True, peer_id=console_id)
        if s is None:
            return answer(RS_NO_RESOURCES)
        s.handshake = Handshake(suite, priv_granted)
        return answer(RS_OK, s.id, (suite.auth, suite.integrity, suite.confidentiality))

    def _handshake(self, bmc_sid: int, client: Client) -> Session | None:
        s = self.table.get(bmc_sid)
        if s is None or not s.v2 or s.active or s.handshake is None or s.client != client:
            return None
        return s

    def _rakp1(self, p: bytes, client: Client) -> Answer:
        if len(p) < 28 or len(p) != 28 + p[27] or p[27] > 16:
            raise Malformed("RAKP 1 of the wrong length")
        tag, bmc_sid, role, user_raw = p[0], struct.unpack("<I", p[4:8])[0], p[24], p[28:]
        s = self._handshake(bmc_sid, client)

        def answer(status: int, body: bytes = b"") -> bytes:
            console = s.peer_id if s else 0
            return wire.build_v20(
                wire.PAYLOAD_RAKP2, 0, 0, bytes((tag, status, 0, 0)) + struct.pack("<I", console) + body
            )

        if s is None or s.handshake is None:
            return answer(RS_INVALID_SESSION)
        hs = s.handshake
        if hs.rakp1 == p and hs.rakp2:
            # A retransmit: the same answer, the same random number. A refusal keeps its delay, so
            # retransmitting cannot learn sooner that a user name is unknown.
            wait = hs.answer_at - self.table.now()
            return Later(hs.rakp2, wait) if wait > 0 else hs.rakp2
        user = user_raw.decode("latin-1")
        priv = role & 0x0F
        if not Priv.CALLBACK <= priv <= Priv.ADMIN:
            self.table.close(s.id)
            return answer(RS_INVALID_ROLE)
        if not user:  # no credential presented (null user): refused, not a failed login
            self.table.close(s.id)
            self.bad.note(client[0], "refused the null user name (RAKP 1)")
            return answer(RS_UNAUTHORIZED_NAME)
        password = self.credentials.password_for(user)
        kuid = crypto.password_key(password, 20) if password is not None else None
        if password is not None and kuid is None:  # the right user; its password cannot be used over IPMI
            self.table.close(s.id)
            self.bad.note(client[0], "RMCP+ refused: the password is longer than 20 bytes")
            return answer(RS_UNAUTHORIZED_NAME)
        if kuid is None:
            turn = self._turn(client, "lanplus")
            if turn is None:
                return None  # the set-up stays: a retransmit tries again
            # Kept (unusable) until it expires, so a retransmitted RAKP 1 gets this same answer.
            hs.failed, hs.rakp1, hs.rakp2 = True, p, answer(RS_UNAUTHORIZED_NAME)
            out = self._failed(turn, client, user, "unknown user (RAKP 1)", hs.rakp2)
            hs.answer_at = self.table.now() + (out.delay if isinstance(out, Later) else 0.0)
            return out
        hs.rakp1, hs.console_rand, hs.bmc_rand, hs.role = p, p[8:24], os.urandom(16), role
        s.user, s.max_priv = user, Priv(priv)
        rakp = self._rakp(s)
        hs.failed, hs.answer_at = False, 0.0
        hs.rakp2 = answer(RS_OK, hs.bmc_rand + self.identity.guid + rakp.rakp2_code(hs.suite, kuid))
        self.table.touch(s)
        self.table.proven(s)  # it received our Open Session answer: not a spoofed address
        return hs.rakp2

    def _rakp(self, s: Session) -> crypto.Rakp:
        hs = s.handshake
        assert hs is not None
        return crypto.Rakp(
            s.peer_id,
            s.id,
            hs.console_rand,
            hs.bmc_rand,
            self.identity.guid,
            hs.role,
            s.user.encode("latin-1"),
        )

    def _rakp3(self, p: bytes, client: Client) -> Answer:
        if len(p) < 8:
            raise Malformed("short RAKP 3")
        tag, status, bmc_sid = p[0], p[1], struct.unpack("<I", p[4:8])[0]
        s = self._handshake(bmc_sid, client)
        if s is None or s.handshake is None or not s.handshake.rakp2 or s.handshake.failed:
            if s is None:
                found = self.table.get(bmc_sid)
                if found is not None and found.active and found.handshake and found.handshake.rakp3 == p:
                    return found.handshake.rakp4  # RAKP 4 was lost: send it again
            self.bad.note(client[0], "dropped a RAKP 3 for an unknown session")
            return None
        hs = s.handshake

        def answer(status_out: int, body: bytes = b"") -> bytes:
            return wire.build_v20(
                wire.PAYLOAD_RAKP4, 0, 0, bytes((tag, status_out, 0, 0)) + struct.pack("<I", s.peer_id) + body
            )

        if status != RS_OK:
            # The client rejected our RAKP 2: it holds a different password. Nothing to check or answer,
            # so it takes no turn: it counts, and trips or extends a hold.
            self.table.close(s.id)
            metrics.IPMI_LOGIN_FAILURES.inc()
            held = self.limiter.held(client[0])
            self.limiter.failure(client[0], "lanplus")
            if not held:
                why = f"wrong password (client refused RAKP 2, status 0x{status:02x})"
                log.warning("login failed", extra={"client": client[0], "user": s.user, "reason": why})
            return None
        turn = self._turn(client, "lanplus")
        if turn is None:
            return None  # the set-up stays: a retransmit tries again
        password = self.credentials.password_for(s.user)
        kuid = crypto.password_key(password, 20) if password is not None else None
        rakp = self._rakp(s)
        if kuid is None or not hmac.compare_digest(rakp.rakp3_code(hs.suite, kuid), p[8:]):
            self.table.close(s.id)
            return self._failed(turn, client, s.user, "wrong password (RAKP 3)", answer(RS_INVALID_ICV))
        turn.passed()
        sik = rakp.sik(hs.suite, kuid)
        s.keys = crypto.SessionKeys.derive(hs.suite, sik)
        s.priv = s.max_priv
        self.table.activate(s)
        s.window = SeqWindow(0)
        hs.rakp3 = p
        hs.rakp4 = answer(RS_OK, rakp.rakp4_code(hs.suite, sik))
        self.table.touch(s)
        metrics.IPMI_SESSIONS_OPENED.labels("lanplus").inc()
        log.info(
            "session opened",
            extra=self._extra(s, "RAKP 3", CC_OK, protocol="lanplus", cipher_suite=hs.suite.id),
        )
        return hs.rakp4

    # --- commands outside and inside a session ---------------------------------------------
    def _sessionless(self, req: Request, client: Client, *, v2: bool) -> tuple[int | None, bytes]:
        if req.netfn != 0x06:
            self.bad.note(client[0], "dropped a sessionless command")
            return None, b""
        if req.cmd == 0x38:
            return channel.auth_capabilities(req.data)
        if req.cmd == 0x54:
            return channel.cipher_suites(req.data)
        self.bad.note(client[0], f"dropped sessionless command 0x{req.cmd:02x}")
        return None, b""

    def _in_session(self, s: Session, req: Request) -> Message:
        """The response message; a retransmitted request gets the first answer again (none while the
        first is still waiting for KubeVirt: that answer goes out when it is in)."""
        key = (req.rq_seq, req.netfn, req.cmd, req.data)
        cached = s.cached(key)
        if cached is not None:
            return cached or None  # b"": still being answered
        s.requests += 1
        if req.netfn == 0x06 and req.cmd in (0x3B, 0x3C):
            name, code, data = self._session_command(s, req)
        elif req.netfn == 0x06 and req.cmd == 0x42:
            name, (code, data) = "Get Channel Info", channel.channel_info(req.data, len(self.table.active()))
        elif req.netfn == 0x06 and req.cmd in (0x38, 0x54):
            name = "Get Channel Auth Capabilities" if req.cmd == 0x38 else "Get Channel Cipher Suites"
            code, data = (
                channel.auth_capabilities(req.data) if req.cmd == 0x38 else channel.cipher_suites(req.data)
            )
        elif self.sol is not None and (req.netfn, req.cmd) in self.sol.COMMANDS:
            name, code, data = self.sol.command(s, req)
        else:
            caller = Caller(s.user, client_text(s.client), s.priv)
            name, outcome = self.commands.handle(caller, req)
            if isinstance(outcome, Waiting):
                s.remember(key, b"")  # a retransmit meanwhile is dropped
                return self._answer_later(s, req, key, name, outcome)
            code, data = outcome
        return self._answered(s, req, key, name, code, data)

    async def _answer_later(
        self, s: Session, req: Request, key: tuple[int, int, int, bytes], name: str, waiting: Waiting
    ) -> bytes:
        code, data = await self.commands.finish(name, waiting)
        return self._answered(s, req, key, name, code, data)

    def _answered(
        self, s: Session, req: Request, key: tuple[int, int, int, bytes], name: str, code: int, data: bytes
    ) -> bytes:
        response = req.response(code, data)
        s.remember(key, response)
        metrics.IPMI_REQUESTS.labels(name, f"0x{code:02x}").inc()
        level = logging.INFO if code != CC_INVALID_COMMAND else logging.DEBUG
        log.log(level, "ipmi request", extra=self._extra(s, name, code))
        return response

    def _session_command(self, s: Session, req: Request) -> tuple[str, int, bytes]:
        if req.cmd == 0x3B:
            name = "Set Session Privilege Level"
            if len(req.data) != 1:
                return name, CC_BAD_LENGTH, b""
            level = req.data[0] & 0x0F
            if level == 0:
                return name, CC_OK, bytes((s.priv,))
            if not Priv.USER <= level <= s.max_priv:
                return name, CC_PRIV_NOT_AVAILABLE, b""
            s.priv = Priv(level)
            return name, CC_OK, bytes((level,))
        name = "Close Session"
        if len(req.data) not in (4, 5):
            return name, CC_BAD_LENGTH, b""
        target = struct.unpack("<I", req.data[:4])[0]
        if target != s.id:
            other = self.table.get(target)
            if other is None:
                return name, CC_INVALID_SESSION_ID, b""
            if s.priv < Priv.ADMIN:
                return name, CC_INSUFFICIENT_PRIV, b""
        self.table.close(target)
        return name, CC_OK, b""

    # --- helpers ---------------------------------------------------------------------------
    def _turn(self, client: Client, protocol: str) -> Turn | None:
        """The turn of a credential check (vmbmc/auth/lockout.py): an Activate Session's auth code, a RAKP
        3's HMAC, or a user name that turns out unknown. None when the address is held and had a check
        less than the hold's delay ago: the datagram is dropped unchecked, and the client's retransmit
        tries again. IPMI attempts never queue: ipmitool starts a new RMCP+ set-up after 1 s without an
        answer, so a queued answer would reach nobody and stale set-ups would push real ones back."""
        turn = self.limiter.turn(client[0], protocol, queue=False)
        if turn is None:
            self.bad.note(client[0], "dropped a login attempt unchecked: its address is held, no turn free")
        return turn

    def _failed(self, turn: Turn, client: Client, user: str, why: str, answer: bytes) -> Answer:
        """A failed login (a wrong credential presented): counted, logged until the address is held, and its
        answer delayed while it is."""
        metrics.IPMI_LOGIN_FAILURES.inc()
        delay = turn.failed()
        if not delay:  # once held, the limiter has logged the hold; stay quiet
            log.warning("login failed", extra={"client": client[0], "user": user, "reason": why})
            return answer
        return Later(answer, delay)

    @staticmethod
    def _extra(s: Session, command: str, code: int, **more: object) -> dict[str, object]:
        return {
            "client": client_text(s.client),
            "user": s.user,
            "command": command,
            "cc": f"0x{code:02x}",
            **more,
        }
