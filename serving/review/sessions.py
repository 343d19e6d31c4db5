"""Reviewer sessions, held server-side in the process: the browser's cookie carries only a random
session id, never the reviewer's token.

The token stays in this process's memory (never in the cookie, never logged) so that every request
re-authenticates it against the store: a token revoked with `tiergate feedback token revoke` ends its
sessions at their next request. The map is keyed by a digest of the session id, a session ends after
`idle_s` unused or `max_s` in all, and at most `max_sessions` are held (the least recently used goes
first). A new id is issued at every login (no session fixation). A restart logs everyone out, and
replicas do not share sessions (the chart runs one).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

ID_BYTES = 32  # 256-bit session ids and CSRF tokens: a property of the format, not a tunable


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass
class Session:
    token: str = field(repr=False)  # the reviewer's bearer token: memory only, re-checked on every request
    reviewer: str
    csrf: str = field(repr=False)  # the synchronizer token every form of this session carries
    created: float
    last_seen: float
    skipped: set[int] = field(default_factory=set)  # queue items skipped in this session
    flash: str = ""  # one message for the next page (what the last action did)

    def take_flash(self) -> str:
        message, self.flash = self.flash, ""
        return message


class SessionStore:
    def __init__(self, idle_s: float, max_s: float, max_sessions: int, clock: Callable[[], float] = time.monotonic):
        self.idle_s = idle_s
        self.max_s = max_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, token: str, reviewer: str) -> tuple[str, Session]:
        """A new session; returns (the id for the cookie, the session)."""
        session_id = secrets.token_urlsafe(ID_BYTES)
        now = self._clock()
        session = Session(token=token, reviewer=reviewer, csrf=secrets.token_urlsafe(ID_BYTES), created=now, last_seen=now)
        with self._lock:
            self._sessions[_digest(session_id)] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session behind a cookie value (and mark it used), or None: unknown, idle too long, or too old."""
        if not session_id:
            return None
        key = _digest(session_id)
        now = self._clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.last_seen > self.idle_s or now - session.created > self.max_s:
                del self._sessions[key]
                return None
            session.last_seen = now
            self._sessions.move_to_end(key)
            return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(_digest(session_id), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
