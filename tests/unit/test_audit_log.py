"""The audit log in the state DB: aggregated refusals written once, retention bounded."""

from __future__ import annotations

import time

import pytest

from steadyserve.control.statedb import StateDB


@pytest.fixture
def db(tmp_path):
    database = StateDB(tmp_path / "state.db")
    yield database
    database.close()


NOW = time.time()  # rows are written with real times: every write prunes with the default retention


def refusal(ts: float, count: int = 1) -> dict:
    return {"ts": ts, "actor": "-", "action": "invoke", "target": "/x", "source": "10.0.0.1",
            "result": "401: invalid or revoked token", "count": count, "last_ts": ts + 1}


def test_refusal_rows_and_the_gateways_cursor_are_written_together(db):
    db.record_refusals([refusal(NOW, 5000), refusal(NOW + 1, 7)], "g0", '{"seq": 2}')
    rows = db.audit(limit=10)
    assert [(r["count"], r["last_ts"]) for r in rows] == [(5000, NOW + 1), (7, NOW + 2)]
    assert db.audit_cursor("g0") == '{"seq": 2}' and db.audit_cursor("g1") is None


def test_a_change_is_one_row_with_a_count_of_one(db):
    db.add_audit("admin-bot", "POST", "/v1/deployments/x/scale", "127.0.0.1", "200")
    assert [(r["actor"], r["count"], r["last_ts"]) for r in db.audit()] == [("admin-bot", 1, None)]


def test_only_the_newest_rows_are_kept(db):
    db.record_refusals([refusal(NOW + i) for i in range(30)], "g0", "{}")
    assert db.prune_audit(max_rows=10) == 20
    assert [r["ts"] for r in db.audit(limit=100)] == [NOW + i for i in range(20, 30)]


def test_rows_older_than_the_retention_go(db):
    db.record_refusals([refusal(NOW + i) for i in range(10)], "g0", "{}")
    assert db.prune_audit(now=NOW + 7.5 + 60, max_age_s=60) == 8
    assert [r["ts"] for r in db.audit()] == [NOW + 8, NOW + 9]
    assert db.prune_audit(now=NOW + 1000, max_age_s=60) == 2 and db.audit() == []


def test_every_write_prunes_with_the_default_retention(db):
    db.record_refusals([refusal(NOW - 100 * 24 * 3600)], "g0", "{}")  # past the 90 days kept
    db.add_audit("admin-bot", "POST", "/v1/x", "local", "200")
    assert [r["actor"] for r in db.audit()] == ["admin-bot"]


def test_a_flood_of_refusals_never_pushes_out_the_record_of_a_change(db):
    db.add_audit("admin-bot", "delete", "DELETE /v1/deployments/x", "127.0.0.1", "202")
    db.record_refusals([refusal(NOW + i) for i in range(30)], "g0", "{}")
    db.add_audit("admin-bot", "scale", "POST /v1/deployments/y/scale", "127.0.0.1", "200")
    assert db.prune_audit(max_rows=10) == 20  # only refusals went: the 10 newest stay
    rows = db.audit(limit=100)
    assert [r["action"] for r in rows if r["result"] in ("200", "202")] == ["delete", "scale"]
    assert [r["ts"] for r in rows if r["result"].startswith("401")] == [NOW + i for i in range(20, 30)]
