"""Redfish sessions: X-Auth-Token login with an idle timeout and a bounded count.

Tokens are kept only as their SHA-256 (a memory dump does not hand out live tokens). A session
expires after `timeout` seconds without a request. When `max_sessions` are open, creating one more
closes the least recently used: a client that lost its token (sushy never logs out when it crashes)
must never lock the BMC out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Session:
    id: str
    user: str
    client: str
    created: dt.datetime
    last_used: float
    token_digest: str = field(repr=False)


class SessionStore:
    def __init__(
        self,
        timeout: float = 1800.0,
        max_sessions: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        # digest -> Session, least recently used first
        self._by_digest: OrderedDict[str, Session] = OrderedDict()

    def create(self, user: str, client: str) -> tuple[Session, str]:
        """Open a session; returns it and its token (shown to the client once, never stored)."""
        token = secrets.token_hex(32)
        session = Session(
            id=secrets.token_hex(8),
            user=user,
            client=client,
            created=dt.datetime.now(dt.UTC).replace(microsecond=0),
            last_used=self._clock(),
            token_digest=_digest(token),
        )
        with self._lock:
            self._expire()
            while len(self._by_digest) >= self.max_sessions:
                _, evicted = self._by_digest.popitem(last=False)
                log.info("session limit reached; closed the least recently used session",
                         extra={"session": evicted.id, "user": evicted.user, "client": evicted.client})
            self._by_digest[session.token_digest] = session
        return session, token

    def lookup(self, token: str) -> Session | None:
        """The live session of `token` (and mark it used), or None."""
        digest = _digest(token)
        now = self._clock()
        with self._lock:
            session = self._by_digest.get(digest)
            if session is None:
                return None
            if now - session.last_used > self.timeout:
                del self._by_digest[digest]
                return None
            session.last_used = now
            self._by_digest.move_to_end(digest)
            return session

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            self._expire()
            return next((s for s in self._by_digest.values() if s.id == session_id), None)

    def all(self) -> list[Session]:
        with self._lock:
            self._expire()
            return sorted(self._by_digest.values(), key=lambda s: s.created)

    def delete(self, session_id: str) -> bool:
        """Log out: the session's token stops working at once."""
        with self._lock:
            for digest, session in self._by_digest.items():
                if session.id == session_id:
                    del self._by_digest[digest]
                    return True
            return False

    def clear(self) -> int:
        with self._lock:
            count = len(self._by_digest)
            self._by_digest.clear()
            return count

    def _expire(self) -> None:
        now = self._clock()
        for digest in [d for d, s in self._by_digest.items() if now - s.last_used > self.timeout]:
            del self._by_digest[digest]
