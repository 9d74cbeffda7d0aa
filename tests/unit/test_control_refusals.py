"""Control-API refusals in the audit log: sanitised, capped targets; alike refusals counted in one
row per window, exactly; written when the window ends and when the loop shuts down (real SQLite)."""

from __future__ import annotations

import asyncio
import time

import pytest

from steadyserve.control.api_refusals import OVERFLOW, RefusalAudit, RefusalKey, RefusalWindow
from steadyserve.control.statedb import StateDB
from steadyserve.printable import AUDIT_TARGET_MAX_CHARS, printable


def key(target: str = "GET /v1/deployments", actor: str = "-", result: str = "401: invalid or revoked token",
        source: str = "203.0.113.5") -> RefusalKey:
    return RefusalKey(actor, "read", target, source, result)


@pytest.mark.parametrize(("raw", "stored"), [
    ("GET /v1/deployments", "GET /v1/deployments"),
    ("GET /\x1b[2J\x1b[31mred", "GET /\\x1b[2J\\x1b[31mred"),  # ANSI: clear screen, colour
    ("GET /a\nb\rc\td\x00e\x7f", "GET /a\\nb\\rc\\td\\x00e\\x7f"),  # a forged second line, NUL, DEL
    ("GET /\x9b31m\u202eevil\u200b", "GET /\\x9b31m\\u202eevil\\u200b"),  # C1 CSI, bidi override, zero width
    ("GET /caf\u00e9/\u6f22\u5b57", "GET /caf\u00e9/\u6f22\u5b57"),  # printable non-ASCII is kept
])
def test_control_and_format_characters_are_escaped(raw, stored):
    assert printable(raw) == stored


@pytest.mark.parametrize("raw", ["GET /" + "a" * 60_000, "GET /" + "\x1b[31m" * 12_000, "\x1b" * 300])
def test_a_long_target_is_cut_to_the_cap_and_marked(raw):
    stored = printable(raw, AUDIT_TARGET_MAX_CHARS)
    assert len(stored) <= AUDIT_TARGET_MAX_CHARS and stored.endswith("…")
    assert stored.isprintable() and "\x1b" not in stored
    assert not stored[:-1].endswith(("\\", "\\x", "\\x1"))  # no escape cut in half


def test_a_target_at_the_cap_is_kept_whole():
    assert printable("x" * AUDIT_TARGET_MAX_CHARS, AUDIT_TARGET_MAX_CHARS) == "x" * AUDIT_TARGET_MAX_CHARS


def test_alike_refusals_in_one_window_are_one_row_with_an_exact_count():
    window = RefusalWindow()
    for i in range(10_000):
        window.add(key(), ts=1000.0 + i / 1000, now=5.0)
    window.add(key(source="198.51.100.7"), ts=1011.0, now=5.0)
    rows = window.take()
    assert [(r["source"], r["count"], r["ts"], r["last_ts"]) for r in rows] == [
        ("203.0.113.5", 10_000, 1000.0, 1000.0 + 9999 / 1000), ("198.51.100.7", 1, 1011.0, 1011.0)]
    assert window.take() == [] and window.wait_s(now=6.0, window_s=5.0) is None


def test_the_window_ends_window_s_after_its_first_refusal():
    window = RefusalWindow()
    assert window.wait_s(now=10.0, window_s=5.0) is None
    window.add(key(), ts=1.0, now=10.0)
    window.add(key(), ts=2.0, now=12.0)
    assert window.wait_s(now=12.0, window_s=5.0) == 3.0
    assert window.wait_s(now=15.5, window_s=5.0) == 0.0


def test_callers_beyond_the_key_limit_share_one_row_per_result_and_none_goes_uncounted():
    window = RefusalWindow(max_keys=4)
    for i in range(100):
        window.add(key(target=f"GET /{i}"), ts=1.0, now=1.0)
        window.add(key(target=f"GET /{i}", result="403: role 'viewer' may not deploy"), ts=1.0, now=1.0)
    rows = window.take()
    assert sum(r["count"] for r in rows) == 200
    overflow = {r["result"]: r["count"] for r in rows if r["actor"] == OVERFLOW}
    assert overflow == {"401: invalid or revoked token": 98, "403: role 'viewer' may not deploy": 98}
    assert len(rows) == 6


@pytest.fixture
def db(tmp_path):
    database = StateDB(tmp_path / "state.db")
    yield database
    database.close()


def audited(db: StateDB) -> list[tuple[str, int]]:
    return [(r["target"], r["count"]) for r in db.audit(limit=1000)]


def test_the_window_is_written_when_it_ends(db):
    async def scenario() -> list[tuple[str, int]]:
        audit = RefusalAudit(db, window_s=0.2)
        for _ in range(50):
            audit.add(key())
        deadline = time.monotonic() + 30
        while not audited(db) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return audited(db)

    assert asyncio.run(scenario()) == [("GET /v1/deployments", 50)]


def test_what_is_open_when_the_loop_shuts_down_is_written(db):
    async def scenario() -> None:
        audit = RefusalAudit(db, window_s=3600.0)
        for _ in range(7):
            audit.add(key())
        await asyncio.sleep(0)  # the writer task starts, then waits for the window to end

    asyncio.run(scenario())  # cancels the writer at the end, as the controller's loop does on shutdown
    assert audited(db) == [("GET /v1/deployments", 7)]
