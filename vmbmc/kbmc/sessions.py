"""IPMI sessions: the bounded table (evicting unauthenticated handshakes when full), idle expiry,
inbound sequence windows (replay protection) and the per-session cache that answers a retransmitted
request without carrying it out twice.
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
    failed: bool = False  # RAKP 1 named an unknown user: only its retransmits are answered
    answer_at: float = 0.0  # when that refusal may be answered (a held address waits)


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
    created: float = 0.0
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


class _Stage:
    """Unauthenticated handshakes of one stage, oldest first, with how many each address holds, so
    that a victim is found without scanning the table."""

    def __init__(self) -> None:
        self.order: OrderedDict[int, Session] = OrderedDict()
        self.per_addr: dict[str, OrderedDict[int, Session]] = {}
        self.by_count: dict[int, set[str]] = {}
        self.top = 0

    def __len__(self) -> int:
        return len(self.order)

    def _move(self, addr: str, old: int, new: int) -> None:
        if old:
            bucket = self.by_count[old]
            bucket.discard(addr)
            if not bucket:
                del self.by_count[old]
        if new:
            self.by_count.setdefault(new, set()).add(addr)
        self.top = max(self.top, new)
        while self.top and self.top not in self.by_count:
            self.top -= 1

    def add(self, s: Session) -> None:
        addr = s.client[0]
        mine = self.per_addr.setdefault(addr, OrderedDict())
        mine[s.id] = s
        self.order[s.id] = s
        self._move(addr, len(mine) - 1, len(mine))

    def discard(self, s: Session) -> None:
        if self.order.pop(s.id, None) is None:
            return
        addr = s.client[0]
        mine = self.per_addr[addr]
        del mine[s.id]
        if not mine:
            del self.per_addr[addr]
        self._move(addr, len(mine) + 1, len(mine))

    def victim(self, now: float, grace: float) -> Session | None:
        """The oldest handshake of the address holding the most, if it is older than `grace`;
        otherwise the oldest of all. (Honest clients behind one address, 20 ipmitool processes,
        hold many handshakes for a few milliseconds each: they are not the ones to evict.)"""
        if not self.order:
            return None
        if self.top > 1:
            bucket = self.by_count[self.top]
            if len(bucket) <= 32:
                oldest = min((next(iter(self.per_addr[a].values())) for a in bucket), key=lambda s: s.created)
            else:  # many addresses tie: the oldest of theirs is near the front
                oldest = next(s for s in self.order.values() if s.client[0] in bucket)
            if now - oldest.created > grace:
                return oldest
        return next(iter(self.order.values()))


class SessionTable:
    """Sessions of one BMC.

    At most `max_sessions` authenticated sessions (a new one is refused when they are all in use)
    and `max_handshakes` set-ups in progress. Nobody fills the table without a password: when the
    handshakes are full, a new one evicts the oldest unauthenticated handshake, preferring the
    address holding the most, and among handshakes first those whose client never showed it
    receives our answers (no RAKP 1 yet: a spoofed source address can get no further). There is no
    fixed per-address cap, since honest concurrent clients share one source address.
    """

    def __init__(
        self,
        max_sessions: int = 64,
        idle_timeout: float = 60.0,
        handshake_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_handshakes: int = 1024,
        grace: float = 0.5,
    ) -> None:
        self.max_sessions = max_sessions
        self.max_handshakes = max_handshakes
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.grace = grace
        self._clock = clock
        self._sessions: dict[int, Session] = {}
        self._unproven = _Stage()  # Open Session / Get Session Challenge answered, nothing since
        self._proven = _Stage()  # RAKP 1 answered: the client holds our session id
        self._by_console: dict[tuple[tuple[str, int], int], int] = {}  # RMCP+ set-ups by console id
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def now(self) -> float:
        return self._clock()

    @property
    def handshakes(self) -> int:
        return len(self._unproven) + len(self._proven)

    def _expired(self, s: Session, now: float) -> bool:
        limit = self.idle_timeout if s.active else self.handshake_timeout
        return now - s.last_seen > limit

    def _remove(self, s: Session) -> None:
        self._sessions.pop(s.id, None)
        self._unproven.discard(s)
        self._proven.discard(s)
        key = (s.client, s.peer_id)
        if s.v2 and self._by_console.get(key) == s.id:
            del self._by_console[key]

    def prune(self) -> list[Session]:
        now = self._clock()
        gone = [s for s in self._sessions.values() if self._expired(s, now)]
        for s in gone:
            self._remove(s)
        return gone

    def create(self, client: tuple[str, int], *, v2: bool, peer_id: int | None = None) -> Session | None:
        """A new handshake, or None when every authenticated session is in use."""
        if len(self._sessions) - self.handshakes >= self.max_sessions:
            self.prune()
            if len(self._sessions) - self.handshakes >= self.max_sessions:
                return None
        now = self._clock()
        if self.handshakes >= self.max_handshakes:
            self.prune()
            while self.handshakes >= self.max_handshakes:
                victim = self._unproven.victim(now, self.grace) or self._proven.victim(now, self.grace)
                assert victim is not None
                self._remove(victim)
                self.evicted += 1
        sid = 0
        while sid == 0 or sid in self._sessions:
            sid = secrets.randbits(32)
        s = Session(sid, sid if peer_id is None else peer_id, client, v2, last_seen=now, created=now)
        self._sessions[sid] = s
        self._unproven.add(s)
        if v2:
            self._by_console[(client, s.peer_id)] = sid
        return s

    def proven(self, s: Session) -> None:
        """The client answered with our session id (RAKP 1): it receives at its address."""
        if s.id in self._unproven.order:
            self._unproven.discard(s)
            self._proven.add(s)

    def activate(self, s: Session) -> None:
        """Authenticated: no longer a handshake that may be evicted."""
        s.active = True
        self._unproven.discard(s)
        self._proven.discard(s)
        if s.v2 and self._by_console.get((s.client, s.peer_id)) == s.id:
            del self._by_console[(s.client, s.peer_id)]

    def get(self, sid: int) -> Session | None:
        s = self._sessions.get(sid)
        if s is None:
            return None
        if self._expired(s, self._clock()):
            self._remove(s)
            return None
        return s

    def touch(self, s: Session) -> None:
        s.last_seen = self._clock()

    def find_handshake(self, client: tuple[str, int], peer_id: int) -> Session | None:
        """The set-up in progress of this client with this console session id (an Open Session
        retransmit must not open a second session)."""
        sid = self._by_console.get((client, peer_id))
        return None if sid is None else self._sessions.get(sid)

    def close(self, sid: int) -> bool:
        s = self._sessions.get(sid)
        if s is None:
            return False
        self._remove(s)
        return True

    def clear(self) -> None:
        self._sessions.clear()
        self._unproven, self._proven, self._by_console = _Stage(), _Stage(), {}

    def active(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.active]
