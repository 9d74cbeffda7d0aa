"""The state DB is checked before use, migrated from version 3, never silently replaced;
snapshots are consistent copies, rotated, and restore exactly (real SQLite files)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import stat
from pathlib import Path

import pytest

from steadyserve.control.backup import (
    Snapshot,
    backup,
    newest_good_snapshot,
    parse_snapshot_name,
    refusal_message,
    restore,
    snapshot_name,
    take_snapshot,
    to_prune,
    verify,
)
from steadyserve.control.integrity import DbReport, Schema, judge
from steadyserve.control.leftovers import Leftover, classify
from steadyserve.control.statedb import DB_NAME, STATE_SCHEMA, StateDB
from steadyserve.errors import StateError

V3_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE processes (
    kind TEXT NOT NULL, deployment TEXT NOT NULL DEFAULT '', id TEXT NOT NULL, pid INTEGER,
    state TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0, endpoint TEXT,
    inflight INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0, started_at REAL, updated_at REAL NOT NULL,
    last_error TEXT, routes_version INTEGER, revision INTEGER, PRIMARY KEY (kind, deployment, id));
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    deployment TEXT NOT NULL DEFAULT '', subject TEXT NOT NULL, type TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE deployments (
    name TEXT PRIMARY KEY, revision INTEGER NOT NULL, replicas INTEGER NOT NULL,
    previous_revision INTEGER, deleting INTEGER NOT NULL DEFAULT 0, next_index INTEGER NOT NULL DEFAULT 0);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, digest TEXT NOT NULL,
    rate_per_s REAL, burst INTEGER, created_at REAL NOT NULL, revoked_at REAL);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, source TEXT NOT NULL, result TEXT NOT NULL);
CREATE TABLE revisions (
    deployment TEXT NOT NULL, revision INTEGER NOT NULL, spec TEXT NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (deployment, revision));
INSERT INTO tokens VALUES ('t1', 'ci', 'deployer', 'abc', NULL, NULL, 1.0, NULL);
INSERT INTO audit(ts, actor, action, target, source, result) VALUES (2.0, 'local:me', 'token create', 'ci', 'local', 'ok');
INSERT INTO revisions VALUES ('digits', 1, '{"spec": {}}', 3.0);
INSERT INTO deployments VALUES ('digits', 1, 2, NULL, 0, 2);
PRAGMA user_version = 3;
"""
TABLES = ("meta", "deployments", "revisions", "tokens", "audit", "events", "secrets", "sqlite_sequence")


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    finally:
        conn.close()


def make_state(state_dir: Path) -> Path:
    """A state dir with a few rows in every table a restore brings back."""
    state_dir.mkdir(parents=True, exist_ok=True)
    db = StateDB(state_dir / DB_NAME)
    try:
        db.set_meta(status="stopped", url="http://127.0.0.1:8080")
        db.record_revision("digits", '{"spec": 1}', '{"config": 1}')
        db.record_revision("digits", '{"spec": 2}')
        db.save_deployments([{"name": "digits", "revision": 2, "replicas": 3, "previous_revision": 1,
                              "deleting": 0, "next_index": 3, "spec_replicas": 3}])
        db.add_token("t1", "ci", "deployer", "digest", 5.0, 5)
        db.add_audit("local:me", "token create", "token ci", "local", "ok")
        for i in range(20):
            db.add_event("replica", f"r{i % 3}", "ready", f"ready #{i}", deployment="digits")
        db._conn.execute("INSERT INTO secrets VALUES ('digits', 'API_KEY', 1, 'hunter2', 4.0)")
    finally:
        db.close()
    return state_dir / DB_NAME


# --- the pure decision ------------------------------------------------------------------
V4 = STATE_SCHEMA.tables


@pytest.mark.parametrize(("report", "history", "action", "problem"), [
    (DbReport(Path("s/state.db"), exists=False), [], "create", ""),
    (DbReport(Path("s/state.db"), exists=True, size_bytes=0), [], "create", ""),
    (DbReport(Path("s/state.db"), exists=False), ["state.marker"], "refuse", "is missing, but s had state"),
    (DbReport(Path("s/state.db"), exists=True), ["snapshots/"], "refuse", "is empty (0 bytes)"),
    (DbReport(Path("s/state.db"), True, 4096), ["routes.json"], "refuse", "holds no tables"),
    (DbReport(Path("s/state.db"), True, 8192, error="file is not a database"), [], "refuse",
     "is damaged: file is not a database"),
    (DbReport(Path("s/state.db"), True, 8192, 5, V4), [], "use", ""),
    (DbReport(Path("s/state.db"), True, 8192, 5, V4 - {"tokens"}), [], "refuse", "tables missing (tokens)"),
    (DbReport(Path("s/state.db"), True, 8192, 4, V4), [], "migrate", ""),
    (DbReport(Path("s/state.db"), True, 8192, 4, V4 - {"tokens"}), [], "refuse", "without tables tokens"),
    (DbReport(Path("s/state.db"), True, 8192, 3, V4 - {"secrets"}), [], "migrate", ""),
    (DbReport(Path("s/state.db"), True, 8192, 2, V4), [], "refuse", "schema version 2, which this steadyserve cannot"),
    (DbReport(Path("s/state.db"), True, 8192, 9, V4), [], "refuse", "newer than this steadyserve's (5)"),
    (DbReport(Path("s/state.db"), True, 8192, 0, frozenset({"notes"})), [], "refuse", "not a steadyserve state"),
])
def test_judge_decides_from_the_file_and_the_state_dirs_history(report, history, action, problem):
    verdict = judge(report, STATE_SCHEMA, history)
    assert verdict.action == action
    assert problem in verdict.problem


def test_judge_takes_the_expected_schema_as_given():
    schema = Schema(version=1, tables=frozenset({"a"}), migrations={})
    assert judge(DbReport(Path("x.db"), True, 10, 1, frozenset({"a", "b"})), schema, []).action == "use"


def test_refusal_names_file_problem_snapshot_restore_command_and_leftovers():
    good = Snapshot(Path("s/snapshots/state-20250102T030405.000Z.db"), dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    message = refusal_message(Path("s/state.db"), "is damaged: file is not a database", good,
                              [Leftover(11, "gateway", "g0"), Leftover(12, "replica", "digits/r0")])
    assert "\n" not in message
    assert message.startswith("state DB s/state.db is damaged: file is not a database; newest good snapshot:"
                              " s/snapshots/state-20250102T030405.000Z.db (taken 2025-01-02 03:04:05 UTC)")
    assert "`steady restore s/snapshots/state-20250102T030405.000Z.db --state-dir s`" in message
    assert "gateway g0 (pid 11), replica digits/r0 (pid 12)" in message


def test_refusal_without_a_snapshot_says_how_to_go_on():
    message = refusal_message(Path("s/state.db"), "is missing", None, [])
    assert "no good snapshot in s/snapshots" in message and "move s aside to start afresh" in message


@pytest.mark.parametrize(("cmdline", "cwd", "expected"), [
    (["python", "-m", "steadyserve.replica.main", "--deployment", "digits", "--id", "r1",
      "--endpoint", "unix:/st/sock/digits-r1-0.sock"], None, Leftover(7, "replica", "digits/r1")),
    (["python", "-m", "steadyserve.gateway.main", "--id", "g0", "--routes", "/st/routes.json"], None,
     Leftover(7, "gateway", "g0")),
    (["python", "-m", "steadyserve.gateway.main", "--id", "g0", "--routes", "/st2/routes.json"], None, None),
    (["python", "-m", "steadyserve.replica.main", "--id", "r0", "--endpoint", "unix:/tmp/steady-x1/r0.sock"],
     None, Leftover(7, "replica", "?/r0")),
    (["python", "-m", "steadyserve.cli", "up", "-f", "s.yaml", "--state-dir", "st"], "/", Leftover(7, "controller", "")),
    (["/venv/bin/python", "/venv/bin/steady", "serve", "x.py"], "/work", None),  # .steady of another dir
    (["python", "-m", "steadyserve.cli", "status", "--state-dir", "/st"], "/", None),
    (["vim", "/st/routes.json"], None, None),
])
def test_leftovers_are_found_by_the_paths_their_command_lines_name(cmdline, cwd, expected):
    assert classify(7, cmdline, cwd, [Path("/st"), Path("/st/sock"), Path("/tmp/steady-x1")]) == expected


def test_snapshot_names_sort_in_time_and_rotation_prunes_the_oldest_rotated_ones():
    times = [dt.datetime(2025, 1, 1, 0, 0, s, 1000 * s, tzinfo=dt.UTC) for s in range(5)]
    names = [snapshot_name("state", t) for t in times] + [snapshot_name("backup", times[0]), "notes.db"]
    assert [parse_snapshot_name(snapshot_name("state", t)) for t in times] == times
    assert to_prune(names, keep=2) == [snapshot_name("state", t) for t in times[:3]]
    assert to_prune(names, keep=10) == []


# --- real files -----------------------------------------------------------------------------
def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _zero_length(path: Path) -> None:
    path.write_bytes(b"")


def _cut_mid_page(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(4096 * 3 + 1000)


def _header_only(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(60)


@pytest.mark.parametrize("damage", [_garbage, _zero_length, _cut_mid_page, _header_only])
def test_a_damaged_or_emptied_database_is_refused_and_left_as_it_is(tmp_path, damage):
    db_path = make_state(tmp_path / "st")
    damage(db_path)
    before = db_path.read_bytes()
    for open_it in (lambda: StateDB(db_path), lambda: StateDB.open_existing(db_path.parent),
                    lambda: StateDB.check(db_path)):
        with pytest.raises(StateError) as info:
            open_it()
        assert str(info.value).startswith(f"state DB {db_path} is ")
        assert "no good snapshot" in str(info.value)
    assert db_path.read_bytes() == before


def test_a_missing_database_in_a_state_dir_that_had_one_is_refused(tmp_path):
    db_path = make_state(tmp_path / "st")
    snapshot = take_snapshot(db_path, keep=3)
    db_path.unlink()
    with pytest.raises(StateError) as info:
        StateDB.open_existing(db_path.parent)
    assert f"is missing, but {db_path.parent} had state" in str(info.value)
    assert f"`steady restore {snapshot} --state-dir {db_path.parent}`" in str(info.value)
    assert not db_path.exists()


def test_a_new_state_dir_gets_a_database_and_readers_find_none(tmp_path):
    with pytest.raises(FileNotFoundError):
        StateDB.open_existing(tmp_path)
    assert not (tmp_path / DB_NAME).exists()
    StateDB(tmp_path / DB_NAME).close()
    assert (tmp_path / "state.marker").exists()
    StateDB.open_existing(tmp_path).close()


def test_the_newest_good_snapshot_is_named_and_a_damaged_newer_one_skipped(tmp_path):
    db_path = make_state(tmp_path / "st")
    older = take_snapshot(db_path, 5, dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    newer = take_snapshot(db_path, 5, dt.datetime(2025, 1, 2, tzinfo=dt.UTC))
    _garbage(newer)
    found = newest_good_snapshot(db_path.parent)
    assert found is not None and found.path == older


def test_version_3_is_migrated_in_place_keeping_every_row_and_a_copy(tmp_path):
    db_path = tmp_path / DB_NAME
    conn = sqlite3.connect(db_path)
    conn.executescript(V3_SCHEMA)
    conn.close()
    db = StateDB.open_existing(tmp_path)
    try:
        assert db._conn.execute("PRAGMA user_version").fetchone()[0] == 5
        assert db.tokens()[0]["name"] == "ci"
        columns = {r[1] for r in db._conn.execute("PRAGMA table_info(processes)")}
        assert {"node", "credential"} <= columns
        assert db.audit()[0]["count"] == 1 and db.audit()[0]["last_ts"] is None
        assert db.revision_spec("digits", 1) == '{"spec": {}}' and db.revision_config("digits", 1) is None
        assert db.desired_deployments()[0]["replicas"] == 2
        assert db._conn.execute("SELECT count(*) FROM secrets").fetchone()[0] == 0
    finally:
        db.close()
    kept = list(tmp_path.glob("state.db.schema-v3-*"))
    assert len(kept) == 1
    assert sqlite3.connect(kept[0]).execute("PRAGMA user_version").fetchone()[0] == 3


def test_version_4_is_migrated_in_place_adding_the_replica_columns(tmp_path):
    db_path = make_state(tmp_path)
    conn = sqlite3.connect(db_path)
    conn.executescript("ALTER TABLE processes DROP COLUMN node; ALTER TABLE processes DROP COLUMN credential;"
                       " PRAGMA user_version = 4;")
    conn.close()
    before = rows(db_path)
    db = StateDB.open_existing(tmp_path)
    try:
        assert db._conn.execute("PRAGMA user_version").fetchone()[0] == 5
        db.upsert_process({"kind": "replica", "deployment": "digits", "id": "r0", "state": "ready", "generation": 1, "inflight": 0,
                           "requests": 0, "restarts": 0,
                           "node": "n1", "credential": "k" * 40})
        assert [(r["node"], "credential" in r) for r in db.public_processes()] == [("n1", False)]
    finally:
        db.close()
    assert {t: v for t, v in rows(db_path).items() if t != "processes"} == \
        {t: v for t, v in before.items() if t != "processes"}
    assert len(list(tmp_path.glob("state.db.schema-v4-*"))) == 1


@pytest.mark.parametrize("version", [2, 7])
def test_unknown_versions_are_refused_loudly_not_set_aside(tmp_path, version):
    db_path = tmp_path / DB_NAME
    conn = sqlite3.connect(db_path)
    conn.executescript(V3_SCHEMA.replace("user_version = 3", f"user_version = {version}"))
    conn.close()
    before = db_path.read_bytes()
    with pytest.raises(StateError, match=f"schema version {version}"):
        StateDB(db_path)
    assert db_path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]


def test_backup_is_private_and_restore_brings_back_every_row(tmp_path):
    db_path = make_state(tmp_path / "st")
    original = rows(db_path)
    copy = tmp_path / "elsewhere" / "copy.db"
    found = backup(db_path, copy)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert found == {"deployments": 1, "revisions": 2, "tokens": 1, "audit": 1, "events": 20, "secrets": 1}
    assert rows(copy) == original
    _cut_mid_page(db_path)
    damaged = db_path.read_bytes()
    result = restore(copy, db_path)
    assert result.counts == found
    assert rows(db_path) == original
    assert result.replaced is not None and result.replaced.read_bytes() == damaged  # kept, not deleted
    db = StateDB.open_existing(db_path.parent)
    try:
        assert [e.message for e in db.events(limit=3)] == ["ready #17", "ready #18", "ready #19"]
    finally:
        db.close()


@pytest.mark.parametrize("damage", [_garbage, _zero_length, _cut_mid_page])
def test_a_damaged_snapshot_is_not_restored(tmp_path, damage):
    db_path = make_state(tmp_path / "st")
    bad = tmp_path / "bad.db"
    backup(db_path, bad)
    damage(bad)
    before = db_path.read_bytes()
    with pytest.raises(StateError, match="bad.db"):
        verify(bad)
    with pytest.raises(StateError):
        restore(bad, db_path)
    assert db_path.read_bytes() == before


def test_rotation_keeps_the_newest_snapshots(tmp_path):
    db_path = make_state(tmp_path / "st")
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    taken = [take_snapshot(db_path, 3, start + dt.timedelta(minutes=5 * i)) for i in range(6)]
    manual = db_path.parent / "snapshots" / snapshot_name("backup", start)
    backup(db_path, manual)
    take_snapshot(db_path, 3, start + dt.timedelta(minutes=30))
    left = sorted(p.name for p in (db_path.parent / "snapshots").iterdir())
    assert left == sorted([manual.name, *(p.name for p in taken[4:]),
                           snapshot_name("state", start + dt.timedelta(minutes=30))])
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (db_path.parent / "snapshots").iterdir())
