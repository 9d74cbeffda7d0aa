"""State files at the edges: copies left by a killed backup or restore, a long quick_check answer,
a damaged write-ahead log (real SQLite files, real processes killed mid-way)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from steadyserve.control.backup import (
    backup,
    newest_good_snapshot,
    remove_stale_partials,
    snapshots,
    take_snapshot,
    verify,
)
from steadyserve.control.integrity import PROBLEMS_SHOWN, SNAPSHOT_DIR, summarise_problems, wal_header_problem
from steadyserve.control.statedb import DB_NAME, StateDB
from steadyserve.errors import StateError

STEADY = [sys.executable, "-m", "steadyserve.cli"]
# Runs backup() or restore() for real and is killed (SIGKILL) at its Nth fsync: the copy is
# complete there, the most tempting leftover to mistake for a snapshot.
KILLED_AT_FSYNC = """
import os, signal, sys
from pathlib import Path
from steadyserve.control import backup

die_at, calls, fsync = int(sys.argv[1]), [0], os.fsync
def killed_at(fd):
    calls[0] += 1
    if calls[0] == die_at:
        os.kill(os.getpid(), signal.SIGKILL)
    fsync(fd)
os.fsync = killed_at
getattr(backup, sys.argv[2])(Path(sys.argv[3]), Path(sys.argv[4]))
"""


def make_state(state_dir: Path, events: int = 20) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    db = StateDB(state_dir / DB_NAME)
    try:
        db.set_meta(status="stopped")
        db.add_audit("local:me", "token create", "token ci", "local", "ok")
        for i in range(events):
            db.add_event("replica", f"r{i % 3}", "ready", f"ready #{i} " + "x" * 200, deployment="digits")
    finally:
        db.close()
    return state_dir / DB_NAME


def killed_mid_way(function: str, source: Path, dest: Path, at_fsync: int) -> None:
    child = subprocess.run([sys.executable, "-c", KILLED_AT_FSYNC, str(at_fsync), function, str(source), str(dest)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def hidden(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name.startswith(".")}


# --- copies left by a killed backup or restore ------------------------------------------------
def test_a_killed_backup_leaves_a_copy_that_is_never_taken_for_a_snapshot(tmp_path):
    db_path = make_state(tmp_path / "st")
    take_snapshot(db_path, keep=3)
    directory = db_path.parent / SNAPSHOT_DIR
    killed_mid_way("backup", db_path, directory / "backup-20990101T000000.000Z.db", at_fsync=1)
    [leftover] = [directory / n for n in hidden(directory)]
    assert leftover.name.startswith(".backup-20990101T000000.000Z.db.partial-")
    assert [s.path.name for s in snapshots(db_path.parent)] == [p.name for p in directory.glob("state-*.db")]
    assert newest_good_snapshot(db_path.parent).path.name.startswith("state-")  # type: ignore[union-attr]
    with pytest.raises(StateError, match="is an unfinished copy left by an interrupted backup or restore"):
        verify(leftover)
    refused = subprocess.run([*STEADY, "restore", str(leftover), "--state-dir", str(db_path.parent)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "unfinished copy" in refused.stderr + refused.stdout


def test_the_next_backup_removes_what_a_killed_one_left(tmp_path):
    db_path = make_state(tmp_path / "st")
    directory = db_path.parent / SNAPSHOT_DIR
    killed_mid_way("backup", db_path, directory / "backup-20990101T000000.000Z.db", at_fsync=1)
    assert hidden(directory)
    done = subprocess.run([*STEADY, "backup", "--state-dir", str(db_path.parent)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "an unfinished copy left by an interrupted backup" in done.stderr
    assert hidden(directory) == set() and len(snapshots(db_path.parent)) == 1


@pytest.mark.parametrize("at_fsync", [1, 2])  # the staged copy being written; staged, not yet in place
def test_the_next_restore_removes_what_a_killed_one_left(tmp_path, at_fsync):
    db_path = make_state(tmp_path / "st")
    snapshot = take_snapshot(db_path, keep=3)
    killed_mid_way("restore", snapshot, db_path, at_fsync=at_fsync)
    left = hidden(db_path.parent)
    assert left and all(".state.db.restoring-" in name for name in left)
    done = subprocess.run([*STEADY, "restore", str(snapshot), "--state-dir", str(db_path.parent)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert hidden(db_path.parent) == set()
    assert verify(db_path)["events"] == 20


def test_only_its_own_stale_copies_are_removed(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir()
    gone, live = dead_pid(), os.getpid()
    names = {
        f".backup-20990101T000000.000Z.db.partial-{gone}": True,  # a killed `steady backup`
        f".mine.db.partial-{gone}": True,  # a killed `steady backup backups/mine.db`
        f".mine.db.partial-{gone}-journal": True,  # and SQLite's journal of that copy
        f".backup-20990101T000000.000Z.db.partial-{live}": False,  # being written now
        f".notes.txt.partial-{gone}": False,  # someone else's naming
        f"backup-20990101T000000.000Z.db.partial-{gone}": False,  # not hidden: not our name
        f".backup-20990101T000000.000Z.db.partial-{gone}x": False,
    }
    for name in names:
        (directory / name).write_bytes(b"half a copy")
    (directory / f".state-20990101T000000.000Z.db.partial-{gone + 1}").symlink_to(directory / "elsewhere")
    removed = remove_stale_partials(directory, {"mine.db"})
    assert sorted(p.name for p in removed) == sorted(n for n, ours in names.items() if ours)
    assert hidden(directory) == {n for n, ours in names.items() if not ours and n.startswith(".")} | {
        f".state-20990101T000000.000Z.db.partial-{gone + 1}"}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file another user owns")
def test_another_users_stale_copy_stays(tmp_path):
    path = tmp_path / f".backup-20990101T000000.000Z.db.partial-{dead_pid()}"
    path.write_bytes(b"theirs")
    os.chown(path, 65534, 65534)
    assert remove_stale_partials(tmp_path, set()) == [] and path.exists()


def test_a_copy_into_the_same_name_replaces_a_stale_partial_of_it(tmp_path):
    db_path = make_state(tmp_path / "st")
    dest = tmp_path / "out" / "mine.db"
    killed_mid_way("backup", db_path, dest, at_fsync=1)
    assert hidden(dest.parent)
    assert backup(db_path, dest)["events"] == 20
    assert hidden(dest.parent) == set()


# --- a long quick_check answer ---------------------------------------------------------------
@pytest.mark.parametrize("rows", [
    [f"On tree page {p} cell 3: invalid page number 99" for p in range(100)],  # a row per problem
    ["*** in database main ***\n" + "\n".join(f"On tree page {p} cell 3: invalid page number 99"
                                             for p in range(100))],  # one row of many lines
])
def test_quick_checks_answer_is_its_first_problems_and_how_many_more(rows):
    summary = summarise_problems(rows)
    assert summary == ("On tree page 0 cell 3: invalid page number 99; On tree page 1 cell 3: invalid page"
                       " number 99; On tree page 2 cell 3: invalid page number 99 (97 more)")


def test_a_few_problems_are_all_shown():
    assert summarise_problems(["row 1 missing from index i", "wrong # of entries in index i"]) == (
        "row 1 missing from index i; wrong # of entries in index i")


def test_a_database_with_many_damaged_pages_is_refused_in_one_short_line(tmp_path):
    db_path = make_state(tmp_path / "st", events=3000)
    data = bytearray(db_path.read_bytes())
    for page in range(3, len(data) // 4096, 5):  # cell pointers of every fifth page out of range
        data[page * 4096 + 8:page * 4096 + 40] = b"\xff" * 32
    db_path.write_bytes(bytes(data))
    with pytest.raises(StateError) as info:
        StateDB(db_path)
    message = str(info.value)
    assert f"state DB {db_path} is damaged: quick_check: " in message and "\n" not in message
    assert message.count("On tree page") == PROBLEMS_SHOWN and "*** in database" not in message
    assert " more); no good snapshot" in message and len(message) < 1000


# --- the write-ahead log --------------------------------------------------------------------
def with_unchecked_commits(tmp_path: Path) -> Path:
    """A state dir as a killed controller leaves it: 5 committed events only in state.db-wal."""
    db_path = make_state(tmp_path / "live", events=0)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_autocheckpoint=0")
        for i in range(5):
            conn.execute("INSERT INTO events(ts, kind, subject, type, message) VALUES(?, 'replica', 'r0', 'ready', ?)",
                         (float(i), f"committed #{i}"))
        copy = tmp_path / "st"
        copy.mkdir()
        for suffix in ("", "-wal"):  # nothing writes now: the two files agree
            shutil.copyfile(f"{db_path}{suffix}", f"{copy / DB_NAME}{suffix}")
    finally:
        conn.close()
    return copy / DB_NAME


def zero_magic(wal: Path) -> None:
    with open(wal, "r+b") as f:
        f.write(b"\0\0\0\0")


def other_version(wal: Path) -> None:
    with open(wal, "r+b") as f:
        f.seek(4)
        f.write((3007001).to_bytes(4, "big"))


def flipped_salt(wal: Path) -> None:  # magic, version and page size intact: only the checksum tells
    with open(wal, "r+b") as f:
        f.seek(16)
        byte = f.read(1)
        f.seek(16)
        f.write(bytes([byte[0] ^ 0xFF]))


def cut_in_header(wal: Path) -> None:
    with open(wal, "r+b") as f:
        f.truncate(10)


def test_sqlite_itself_drops_the_commits_of_a_wal_with_a_damaged_header(tmp_path):
    """Why steady checks the WAL: SQLite opens the file as if the WAL held nothing, quick_check is ok."""
    db_path = with_unchecked_commits(tmp_path)
    flipped_salt(Path(f"{db_path}-wal"))
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    finally:
        conn.close()


@pytest.mark.parametrize("damage", [zero_magic, other_version, flipped_salt, cut_in_header])
def test_a_damaged_wal_is_refused_naming_it_and_left_as_it_is(tmp_path, damage):
    db_path = with_unchecked_commits(tmp_path)
    wal = Path(f"{db_path}-wal")
    damage(wal)
    before = wal.read_bytes()
    for open_it in (lambda: StateDB(db_path), lambda: StateDB.open_existing(db_path.parent),
                    lambda: StateDB.check(db_path)):
        with pytest.raises(StateError) as info:
            open_it()
        message = str(info.value)
        assert message.startswith(f"state DB {db_path} is damaged: its write-ahead log {wal} is damaged (")
        assert f"move {wal} aside" in message and "steady restore" in message and "\n" not in message
    assert wal.read_bytes() == before


def test_a_good_wal_is_used_and_its_commits_are_kept(tmp_path):
    db_path = with_unchecked_commits(tmp_path)
    assert wal_header_problem(Path(f"{db_path}-wal")) is None
    db = StateDB(db_path)
    try:
        assert [e.message for e in db.events(limit=10)] == [f"committed #{i}" for i in range(5)]
    finally:
        db.close()


def test_an_empty_or_absent_wal_is_no_problem(tmp_path):
    db_path = make_state(tmp_path / "st")
    Path(f"{db_path}-wal").write_bytes(b"")
    assert wal_header_problem(Path(f"{db_path}-wal")) is None
    assert wal_header_problem(tmp_path / "absent-wal") is None
    StateDB(db_path).close()


def test_the_restore_command_a_refusal_prints_is_quoted_for_the_shell(tmp_path):
    import shlex

    from steadyserve.control.backup import Snapshot, refusal_message

    state_dir = tmp_path / "odd $(touch pwned) dir"
    snapshot = state_dir / "snapshots" / "state-20990101T000000.000Z.db"
    import datetime as dt

    message = refusal_message(state_dir / "state.db", "is damaged", Snapshot(snapshot, dt.datetime(2099, 1, 1)), [])
    command = message.split("restore it with `", 1)[1].split("`", 1)[0]
    assert shlex.split(command) == ["steady", "restore", str(snapshot), "--state-dir", str(state_dir)]


def test_old_events_go_beyond_the_newest_kept(tmp_path):
    from steadyserve.control.statedb import StateDB

    db = StateDB(tmp_path / "state.db")
    try:
        for i in range(10):
            db.add_event("replica", "r0", "ready", f"event {i}")
        assert db.prune_events(keep=4) == 6
        assert [e.message for e in db.events(limit=100)] == [f"event {i}" for i in range(6, 10)]
    finally:
        db.close()
