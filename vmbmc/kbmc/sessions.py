"""IPMI sessions: the bounded table, idle expiry, inbound sequence windows (replay protection) and
the per-session cache that answers a retransmitted request without carrying it out twice.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from vmbmc.kbmc.crypto import CipherSuite, SessionKeys


class Priv(enum.IntEnum):
    CALLBACK = 1
    USER = 2
    OPERATOR = 3
    ADMIN = 4


class SeqWindow:
    """Inbound session sequence numbers: accept up to 16 ahead of the highest seen and unseen ones
    up to 32 behind it (IPMI 2.0 §6.12.13 allows a window of this kind); anything else is a replay."""

    AHEAD, BEHIND = 16, 32

    def __init__(self, last: int = 0) -> None:
        self.highest = last
        self.seen = 0  # bit i: highest - i was seen

    def accept(self, seq: int) -> bool:
        if seq == 0:
            return False
        diff = (seq - self.highest) & 0xFFFFFFFF
        if diff and diff <= self.AHEAD:
            self.seen = ((self.seen << diff) | 1) & ((1 << self.BEHIND) - 1)
            self.highest = seq
            return True
        back = (self.highest - seq) & 0xFFFFFFFF
        if back < self.BEHIND and not self.seen >> back & 1:
            self.seen |= 1 << back
            return True
        return False


@dataclass
class Handshake:
    """RMCP+ session set-up in progress (Open Session ... RAKP 4)."""

    suite: CipherSuite
    requested_max: int
    rakp1: bytes = b""  # last RAKP1 payload, so a retransmit gets the same RAKP2
    rakp2: bytes = b""
    rakp3: bytes = b""
    rakp4: bytes = b""
    console_rand: bytes = b""
    bmc_rand: bytes = b""
    role: int = 0


@dataclass
class Session:
    id: int  # the id the client puts in its packets
    peer_id: int  # the id we put in ours (RMCP+: the console's; IPMI 1.5: the same as `id`)
    client: tuple[str, int]
    v2: bool
    user: str = ""
    max_priv: Priv = Priv.USER
    priv: Priv = Priv.USER
    active: bool = False
    keys: SessionKeys | None = None  # RMCP+
    key16: bytes = b""  # IPMI 1.5 MD5 password key
    challenge: bytes = b""  # IPMI 1.5
    handshake: Handshake | None = None
    out_seq: int = 0
    window: SeqWindow = field(default_factory=SeqWindow)
    last_seen: float = 0.0
    requests: int = 0
    answered: OrderedDict[tuple[int, int, int, bytes], tuple[int, bytes]] = field(default_factory=OrderedDict)

    def next_out_seq(self) -> int:
        self.out_seq = (self.out_seq + 1) & 0xFFFFFFFF or 1
        return self.out_seq

    # A retransmit carries the same rqSeq, command and data. rqSeq has 6 bits, so the same key
    # may come back legitimately after 64 requests: an entry is trusted only for 32 requests.
    REPLAY_SPAN = 32
    CACHE_SIZE = 16

    def cached(self, key: tuple[int, int, int, bytes]) -> bytes | None:
        hit = self.answered.get(key)
        if hit and self.requests - hit[0] < self.REPLAY_SPAN:
            return hit[1]
        return None

    def remember(self, key: tuple[int, int, int, bytes], response: bytes) -> None:
        self.answered[key] = (self.requests, response)
        self.answered.move_to_end(key)
        while len(self.answered) > self.CACHE_SIZE:
            self.answered.popitem(last=False)


class SessionTable:
    """Sessions of one BMC. Bounded: when full (after dropping expired ones) a new session is refused."""

    def __init__(
        self,
        max_sessions: int = 64,
        idle_timeout: float = 60.0,
        handshake_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self._clock = clock
        self._sessions: dict[int, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, s: Session, now: float) -> bool:
        limit = self.idle_timeout if s.active else self.handshake_timeout
        return now - s.last_seen > limit

    def prune(self) -> list[Session]:
        now = self._clock()
        gone = [s for s in self._sessions.values() if self._expired(s, now)]
        for s in gone:
            del self._sessions[s.id]
        return gone

    def create(self, client: tuple[str, int], *, v2: bool, peer_id: int | None = None) -> Session | None:
        if len(self._sessions) >= self.max_sessions:
            self.prune()
            if len(self._sessions) >= self.max_sessions:
                return None
        sid = 0
        while sid == 0 or sid in self._sessions:
            sid = secrets.randbits(32)
        s = Session(sid, sid if peer_id is None else peer_id, client, v2, last_seen=self._clock())
        self._sessions[sid] = s
        return s

    def get(self, sid: int) -> Session | None:
        s = self._sessions.get(sid)
        if s is None:
            return None
        now = self._clock()
        if self._expired(s, now):
            del self._sessions[sid]
            return None
        return s

    def touch(self, s: Session) -> None:
        s.last_seen = self._clock()

    def find_handshake(self, client: tuple[str, int], peer_id: int) -> Session | None:
        """The set-up in progress of this client with this console session id (an Open Session
        retransmit must not open a second session)."""
        for s in self._sessions.values():
            if not s.active and s.v2 and s.client == client and s.peer_id == peer_id:
                return s
        return None

    def close(self, sid: int) -> bool:
        return self._sessions.pop(sid, None) is not None

    def clear(self) -> None:
        self._sessions.clear()

    def active(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.active]
