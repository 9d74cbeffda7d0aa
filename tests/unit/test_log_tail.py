"""Tailing <logs_dir>/*.log into the store: each complete line once, across restarts and truncations."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from steadyserve.logs.records import MAX_MESSAGE_CHARS
from steadyserve.logs.store import LOGS_DB_NAME, LogStore
from steadyserve.logs.tail import LogTailer, split_lines

NOW = 1_700_000_000.0


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    s = LogStore(tmp_path / LOGS_DB_NAME)
    yield s  # type: ignore[misc]
    s.close()


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def stored(store: LogStore) -> list[tuple[str, str]]:
    return [(r.record.source, r.record.message) for r in store.query(limit=10_000)]


def test_complete_lines_are_stored_and_a_partial_one_waits(logs_dir: Path, store: LogStore):
    tailer = LogTailer(logs_dir, store)
    append(logs_dir / "digits-r0.log", b"first\nsecond\nthi")
    assert tailer.collect_once(NOW) == 2
    append(logs_dir / "digits-r0.log", b"rd\n")
    assert tailer.collect_once(NOW) == 1
    assert stored(store) == [("digits-r0", "first"), ("digits-r0", "second"), ("digits-r0", "third")]


def test_a_restarted_tailer_neither_repeats_nor_loses_lines(logs_dir: Path, store: LogStore, tmp_path: Path):
    append(logs_dir / "g0.log", b"one\ntw")
    LogTailer(logs_dir, store).collect_once(NOW)
    store.close()
    append(logs_dir / "g0.log", b"o\nthree\n")
    reopened = LogStore(tmp_path / LOGS_DB_NAME)
    try:
        LogTailer(logs_dir, reopened).collect_once(NOW)
        LogTailer(logs_dir, reopened).collect_once(NOW)
        assert [m for _, m in stored(reopened)] == ["one", "two", "three"]
    finally:
        reopened.close()


def test_a_truncated_file_is_read_from_its_start(logs_dir: Path, store: LogStore):
    path = logs_dir / "digits-r0.log"
    tailer = LogTailer(logs_dir, store)
    append(path, b"a long first line\nanother\n")
    tailer.collect_once(NOW)
    os.truncate(path, 0)
    append(path, b"after\n")
    tailer.collect_once(NOW)
    assert [m for _, m in stored(store)] == ["a long first line", "another", "after"]


def test_a_replaced_file_is_read_from_its_start(logs_dir: Path, store: LogStore):
    path = logs_dir / "digits-r0.log"
    tailer = LogTailer(logs_dir, store)
    append(path, b"old one\nold two\n")
    tailer.collect_once(NOW)
    replacement = logs_dir / "new.tmp"  # made while the old file exists: another inode
    append(replacement, b"new one\nnew two\nnew three\n")  # longer than the old: only the inode tells
    os.replace(replacement, path)
    tailer.collect_once(NOW)
    assert [m for _, m in stored(store)] == ["old one", "old two", "new one", "new two", "new three"]


def test_a_line_too_long_is_cut_and_the_next_lines_are_kept(logs_dir: Path, store: LogStore):
    path = logs_dir / "digits-r0.log"
    tailer = LogTailer(logs_dir, store, max_read_bytes=1)  # each read is as small as the tailer allows
    append(path, b"before\n")
    tailer.collect_once(NOW)
    append(path, b"x" * 700_000)  # longer than a line may be, and not yet ended
    tailer.collect_once(NOW)
    append(path, b"y" * 100_000 + b"\nafter\n")
    for _ in range(5):
        tailer.collect_once(NOW)
    messages = [m for _, m in stored(store)]
    assert messages[0] == "before" and messages[2] == "after" and len(messages) == 3
    assert messages[1] == "x" * (MAX_MESSAGE_CHARS - 1) + "…"


@pytest.mark.parametrize(("data", "skipping", "lines", "consumed", "still_skipping"), [
    (b"a\nb\n", False, [b"a", b"b"], 4, False),
    (b"a\nb", False, [b"a"], 2, False),
    (b"rest of cut\nnext\n", True, [b"next"], 17, False),
    (b"rest of cut", True, [], 11, True),
    (b"", False, [], 0, False),
])
def test_splitting_lines(data: bytes, skipping: bool, lines: list[bytes], consumed: int, still_skipping: bool):
    chunk = split_lines(data, skipping, max_line_bytes=64)
    assert (chunk.lines, chunk.consumed, chunk.skipping) == (lines, consumed, still_skipping)


def test_non_utf8_output_is_stored_with_replacement_characters(logs_dir: Path, store: LogStore):
    append(logs_dir / "digits-r0.log", b"bad \xff\xfe bytes\n")
    LogTailer(logs_dir, store).collect_once(NOW)
    assert stored(store) == [("digits-r0", "bad \ufffd\ufffd bytes")]


def test_a_vanished_file_is_forgotten_without_an_error(logs_dir: Path, store: LogStore):
    append(logs_dir / "digits-r0.log", b"one\n")
    tailer = LogTailer(logs_dir, store)
    tailer.collect_once(NOW)
    (logs_dir / "digits-r0.log").unlink()
    assert tailer.collect_once(NOW) == 0
    assert store.offsets() == {}


def test_symlinks_and_fifos_are_not_read(logs_dir: Path, store: LogStore, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"do not read\n")
    (logs_dir / "evil-r0.log").symlink_to(secret)
    os.mkfifo(logs_dir / "fifo-r0.log")
    append(logs_dir / "digits-r0.log", b"fine\n")
    LogTailer(logs_dir, store).collect_once(NOW)
    assert stored(store) == [("digits-r0", "fine")]


def test_one_call_reads_a_bounded_amount_and_later_calls_catch_up(logs_dir: Path, store: LogStore):
    lines = [f"line {i:06d} ".encode() + b"." * 100 for i in range(6000)]  # ~700 kB
    append(logs_dir / "digits-r0.log", b"\n".join(lines) + b"\n")
    tailer = LogTailer(logs_dir, store, max_read_bytes=300_000)
    first = tailer.collect_once(NOW)
    assert 0 < first < 6000
    while tailer.collect_once(NOW):
        pass
    assert [m for _, m in stored(store)] == [line.decode() for line in lines]


def test_every_line_gets_the_revision_its_process_runs_whatever_it_says(logs_dir: Path, store: LogStore):
    append(logs_dir / "digits-r3.log", b"print output\n" + orjson.dumps({"ts": NOW, "msg": "m", "revision": 2})
           + b"\n")
    LogTailer(logs_dir, store, revision_of={"digits-r3": 5}.get).collect_once(NOW)
    assert [r.record.revision for r in store.query()] == [5, 5]  # a printed line cannot make up a rollout


def test_a_line_cannot_place_itself_far_in_the_past(logs_dir: Path, store: LogStore):
    append(logs_dir / "digits-r3.log", orjson.dumps({"ts": NOW - 10, "msg": "recent"}) + b"\n"
           + orjson.dumps({"ts": NOW - 86400, "msg": "backdated"}) + b"\n")
    LogTailer(logs_dir, store).collect_once(NOW)
    assert {r.record.message: r.record.ts for r in store.query()} == {"recent": NOW - 10, "backdated": NOW}
