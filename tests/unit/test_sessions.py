"""Dashboard sessions and one-time logins."""

from __future__ import annotations

from steadyserve.control.sessions import LOGIN_CODE_S, MAX_SESSIONS, SESSION_S, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_login_code_starts_one_session_once():
    sessions = Sessions(Clock())
    code = sessions.mint_login("ops", "admin")
    found = sessions.redeem(code)
    assert found is not None and (found.name, found.role) == ("ops", "admin")
    assert sessions.redeem(code) is None


def test_a_login_code_expires_after_two_minutes():
    clock = Clock()
    sessions = Sessions(clock)
    code = sessions.mint_login("ops", "viewer")
    clock.now += LOGIN_CODE_S + 1
    assert LOGIN_CODE_S == 120 and sessions.redeem(code) is None


def test_a_session_lasts_twelve_hours_and_can_end():
    clock = Clock()
    sessions = Sessions(clock)
    first, second = sessions.start("a", "viewer"), sessions.start("b", "viewer")
    clock.now += SESSION_S - 1
    assert SESSION_S == 12 * 3600 and sessions.get(first) is not None
    sessions.end(second)
    assert sessions.get(second) is None
    clock.now += 2
    assert sessions.get(first) is None and sessions.get(None) is None and sessions.get("forged") is None


def test_a_flood_of_logins_cannot_fill_memory():
    sessions = Sessions(Clock())
    ids = [sessions.start("x", "viewer") for _ in range(MAX_SESSIONS + 10)]
    assert sessions.get(ids[0]) is None and sessions.get(ids[-1]) is not None


def test_one_holders_flood_of_sessions_pushes_out_only_its_own():
    from steadyserve.control.sessions import MAX_LOGIN_CODES, MAX_SESSIONS_PER_NAME

    sessions = Sessions(Clock())
    other = sessions.start("alice", "viewer")
    mine = [sessions.start("mallory", "viewer") for _ in range(MAX_SESSIONS_PER_NAME + 5)]
    assert sessions.get(other) is not None
    assert sum(sessions.get(s) is not None for s in mine) == MAX_SESSIONS_PER_NAME
    codes = [sessions.mint_login("mallory", "viewer") for _ in range(MAX_LOGIN_CODES + 5)]
    assert sessions.redeem(codes[0]) is None and sessions.redeem(codes[-1]) is not None
