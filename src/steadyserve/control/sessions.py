"""Dashboard sessions and one-time logins (in the controller's memory).

A browser proves itself once — with an API token, or with a one-time login code that
`steady dashboard` minted through the control API — and gets a session: a random id in
an HttpOnly, SameSite=Strict cookie. The cookie only ever authorises reading (GET): the
dashboard changes nothing, so a forged cross-site request has nothing to gain.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from ..types import Clock

SESSION_S = 12 * 3600.0
LOGIN_CODE_S = 120.0
LOGIN_PREFIX = "login_"
MAX_SESSIONS = 1000  # beyond: the oldest go (a flood of logins cannot fill memory)
MAX_SESSIONS_PER_NAME = 20  # ... and one holder's flood pushes out only its own sessions
MAX_LOGIN_CODES = 1000


@dataclass(frozen=True)
class Session:
    name: str  # who: the token's name, or the local operator
    role: str
    expires_at: float
    token_id: str | None = None  # the API token it came from: revoking the token ends the session


class Sessions:
    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._codes: dict[str, Session] = {}

    def mint_login(self, name: str, role: str, token_id: str | None = None) -> str:
        """A code that starts one session, once, within ``LOGIN_CODE_S``."""
        self._expire()
        while len(self._codes) >= MAX_LOGIN_CODES:
            del self._codes[next(iter(self._codes))]
        code = LOGIN_PREFIX + secrets.token_urlsafe(24)
        self._codes[code] = Session(name, role, self.clock() + LOGIN_CODE_S, token_id)
        return code

    def redeem(self, code: str) -> Session | None:
        found = self._codes.pop(code, None)
        if found is None or found.expires_at < self.clock():
            return None
        return found

    def start(self, name: str, role: str, token_id: str | None = None) -> str:
        self._expire()
        own = [key for key, s in self._sessions.items() if s.name == name]
        for key in own[: max(0, len(own) - MAX_SESSIONS_PER_NAME + 1)]:
            del self._sessions[key]
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = Session(name, role, self.clock() + SESSION_S, token_id)
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        found = self._sessions.get(session_id)
        if found is None or found.expires_at < self.clock():
            self._sessions.pop(session_id, None)
            return None
        return found

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = self.clock()
        for table in (self._sessions, self._codes):
            for key in [k for k, s in table.items() if s.expires_at < now]:
                del table[key]
