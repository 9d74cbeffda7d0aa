"""The log store: queries the CLI and API use, hostile search text, retention, a private file."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from steadyserve.logs.records import LogRecord
from steadyserve.logs.store import LOGS_DB_NAME, LogStore

T0 = 1_700_000_000.0


def rec(message: str, ts: float = T0, level: str = "info", deployment: str | None = "digits",
        replica: str | None = "r0", source: str | None = None, request_id: str | None = None,
        kind: str = "record") -> LogRecord:
    src = source or (f"{deployment}-{replica}" if deployment else "g0")
    return LogRecord(ts, level, deployment, 1, replica, src, request_id, message, kind)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    s = LogStore(tmp_path / LOGS_DB_NAME)
    yield s  # type: ignore[misc]
    s.close()


def messages(found: list) -> list[str]:
    return [r.record.message for r in found]


def fts_consistent(store: LogStore) -> None:
    store.connection.execute("INSERT INTO logs_fts(logs_fts, rank) VALUES ('integrity-check', 1)")


def test_the_file_is_private_and_in_wal_mode(store: LogStore):
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_writer_does_not_follow_a_planted_symlink(tmp_path: Path):
    target = tmp_path / "elsewhere"
    (tmp_path / LOGS_DB_NAME).symlink_to(target)
    from steadyserve.errors import StateError

    with pytest.raises(StateError, match="not a regular file"):
        LogStore(tmp_path / LOGS_DB_NAME)
    assert not target.exists()


def test_a_request_id_finds_the_lines_of_that_call_only(store: LogStore):
    store.insert_many([
        rec("POST /predict 200 3.1ms", deployment="digits", replica="r0", source="g0", request_id="g0-a-1",
            kind="access"),
        rec("predicting", request_id="g0-a-1"),
        rec("predicting", request_id="g0-a-10"),
        rec("no call"),
    ])
    found = store.query(request_id="g0-a-1")
    assert [(r.record.source, r.record.message) for r in found] == [
        ("g0", "POST /predict 200 3.1ms"), ("digits-r0", "predicting")]


@pytest.mark.parametrize("hostile", [
    '"', '""', 'a" OR "b', "*", "disk*", "NEAR(a b)", "-full", "OR", "AND NOT", "col:value", "^start",
    "')--", "\x00", "", "   ", "(", "{message}: x", "a + b",
])
def test_hostile_search_text_is_only_text(store: LogStore, hostile: str):
    store.insert_many([rec("disk full on /dev/sda"), rec("all good")])
    found = store.query(grep=hostile)
    assert all(hostile.strip('"*()^-:{} ') in r.record.message for r in found)


@pytest.mark.parametrize(("grep", "expected"), [
    ("disk full", ["disk full on /dev/sda"]),
    ("DISK FULL", ["disk full on /dev/sda"]),
    ("full disk", []),  # words in this order
    ('disk" OR "good', []),  # not an OR: the quote is text
    ("dev/sda", ["disk full on /dev/sda"]),
    ("dis", []),  # whole words
])
def test_search_matches_words_in_order(store: LogStore, grep: str, expected: list[str]):
    store.insert_many([rec("disk full on /dev/sda"), rec("all good")])
    assert messages(store.query(grep=grep)) == expected


@pytest.mark.parametrize(("level", "expected"), [
    ("debug", ["d", "i", "w", "e", "c"]),
    ("info", ["i", "w", "e", "c"]),
    ("warning", ["w", "e", "c"]),
    ("error", ["e", "c"]),
    ("critical", ["c"]),
])
def test_a_level_means_that_level_and_above(store: LogStore, level: str, expected: list[str]):
    store.insert_many([rec(name[0], level=name) for name in ("debug", "info", "warning", "error", "critical")])
    assert messages(store.query(level=level)) == expected


def test_an_unknown_level_is_refused(store: LogStore):
    with pytest.raises(ValueError, match="unknown level"):
        store.query(level="loud")


@pytest.mark.parametrize(("filters", "expected"), [
    ({"deployment": "digits"}, ["a", "b"]),
    ({"deployment": "other"}, ["c"]),
    ({"replica": "r1"}, ["b"]),
    ({"replica": "other-r0"}, ["c"]),  # a process label
    ({"replica": "g0"}, ["gw"]),
    ({"since": T0 + 1}, ["b", "c", "gw"]),
    ({"until": T0 + 1}, ["a"]),
    ({"since": T0 + 1, "until": T0 + 2}, ["b"]),
])
def test_filters(store: LogStore, filters: dict, expected: list[str]):
    store.insert_many([rec("a", ts=T0), rec("b", ts=T0 + 1, replica="r1"), rec("c", ts=T0 + 2, deployment="other"),
                       rec("gw", ts=T0 + 3, deployment=None, replica=None, source="g0")])
    assert messages(store.query(**filters)) == expected


def test_the_newest_lines_come_back_oldest_first(store: LogStore):
    store.insert_many([rec(str(i)) for i in range(10)])
    assert messages(store.query(limit=3)) == ["7", "8", "9"]


def test_following_returns_what_came_after_an_id(store: LogStore):
    store.insert_many([rec("old")])
    last = store.last_id()
    store.insert_many([rec("new 1"), rec("new 2")])
    assert messages(store.query(after_id=last)) == ["new 1", "new 2"]
    assert store.query(after_id=store.last_id()) == []


def test_ids_are_never_reused_after_everything_was_pruned(store: LogStore):
    store.insert_many([rec("old", ts=T0)])
    last = store.last_id()
    store.prune(max_bytes=1 << 40, max_age_s=10, now=T0 + 100)
    store.insert_many([rec("new", ts=T0 + 100)])
    assert messages(store.query(after_id=last)) == ["new"]


def test_retention_by_age_deletes_old_lines_and_their_search_entries(store: LogStore):
    store.insert_many([rec(f"ancient line {i}", ts=T0 - 1000 + i) for i in range(5)] + [rec("recent line", ts=T0)])
    result = store.prune(max_bytes=1 << 40, max_age_s=100, now=T0)
    assert result.by_age == 5
    assert messages(store.query()) == ["recent line"]
    assert store.query(grep="ancient") == []
    fts_consistent(store)


def test_retention_by_size_keeps_the_newest_lines(store: LogStore):
    for batch in range(20):
        store.insert_many([rec(f"batch {batch} line {i} " + "payload words here " * 8, ts=T0 + batch)
                           for i in range(500)])
    max_bytes = store.used_bytes() // 3
    for _ in range(60):  # each call deletes a bounded share, as it would every few seconds
        if store.used_bytes() <= max_bytes:
            break
        store.prune(max_bytes=max_bytes, max_age_s=1e9, now=T0 + 100)
    assert store.used_bytes() <= max_bytes
    assert store.query(grep="batch 0") == []
    assert len(store.query(grep="batch 19", limit=1000)) == 500
    fts_consistent(store)


def test_a_reader_reads_while_the_writer_is_in_a_transaction(store: LogStore):
    store.insert_many([rec("committed")])
    reader = LogStore.open_existing(store.path)
    try:
        with store.transaction():
            store.insert_many([rec("not yet")])
            assert messages(reader.query()) == ["committed"]
        assert messages(reader.query()) == ["committed", "not yet"]
    finally:
        reader.close()


def test_a_reader_cannot_write(store: LogStore):
    reader = LogStore.open_existing(store.path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.insert_many([rec("x")])
    finally:
        reader.close()


def test_a_reader_does_not_create_a_missing_store(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        LogStore.open_existing(tmp_path / LOGS_DB_NAME)
    assert not (tmp_path / LOGS_DB_NAME).exists()
