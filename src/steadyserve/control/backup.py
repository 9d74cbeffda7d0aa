"""Snapshots of the state database: taken online, checked, rotated, restored.

    backup(db, dest)          a consistent copy while the controller writes (SQLite's backup
                              API), created 0600: it holds token hashes, audit rows and secrets
    verify(path)              the copy is a usable state database; its row counts
    take_snapshot(db, keep)   <state-dir>/snapshots/state-<UTC>.db; the oldest beyond keep go
    keep_snapshots(...)       the controller's loop: one snapshot at start, then every interval
    restore(snapshot, db)     the replaced database is kept aside, never deleted
    refusal(db, problem)      the one-line StateError for a database that cannot be used

``steady backup`` without FILE writes ``snapshots/backup-<UTC>.db``, which rotation keeps.

Copies are written as ``.<name>.partial-<pid>`` (restore stages ``.<db>.restoring-<pid>``) and
renamed into place once checked. A process killed meanwhile leaves one behind: the next backup
or restore into that directory removes those whose process is gone (``remove_stale_partials``),
and none is ever taken for a snapshot (not listed, refused by ``verify``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import shlex
import sqlite3
import stat
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import StateError
from ..wording import plural
from .integrity import SNAPSHOT_DIR, inspect_db, judge, write_marker
from .leftovers import Leftover, running_from
from .processes import pid_alive
from .statedb import STATE_SCHEMA

log = logging.getLogger(__name__)

COUNTED = ("deployments", "revisions", "tokens", "audit", "events", "secrets")
ROTATED_PREFIX = "state"  # snapshots the controller takes (rotated)
MANUAL_PREFIX = "backup"  # `steady backup` without FILE (kept)
_NAME = re.compile(rf"^(?:{ROTATED_PREFIX}|{MANUAL_PREFIX})-(\d{{8}}T\d{{6}}\.\d{{3}})Z\.db$")
_STAMP = "%Y%m%dT%H%M%S.%f"
# See the module docstring; SQLite's side files of such a copy (-journal, -wal, -shm) go with it.
_UNFINISHED = re.compile(r"^\.(?P<of>.+)\.(?:partial|restoring)-(?P<pid>\d+)(?:-journal|-wal|-shm)?$")


@dataclass(frozen=True)
class Snapshot:
    path: Path
    taken: dt.datetime  # UTC, from the file name


def snapshot_name(prefix: str, now: dt.datetime) -> str:
    """``state-20250102T030405.678Z.db``: names sort in time order."""
    return f"{prefix}-{now.astimezone(dt.UTC).strftime(_STAMP)[:-3]}Z.db"


def parse_snapshot_name(name: str) -> dt.datetime | None:
    match = _NAME.match(name)
    if match is None:
        return None
    return dt.datetime.strptime(match.group(1) + "000", _STAMP).replace(tzinfo=dt.UTC)


def to_prune(names: Sequence[str], keep: int) -> list[str]:
    """The rotated snapshots beyond the newest ``keep`` (manual backups are never pruned)."""
    rotated = sorted(n for n in names if n.startswith(f"{ROTATED_PREFIX}-") and parse_snapshot_name(n))
    return rotated[:-keep] if keep > 0 else rotated


def unfinished_copy_of(name: str) -> tuple[str, int] | None:
    """For a copy still being written (``..state.db.restoring-41.partial-41``): the file it becomes
    in the end (``state.db``) and the pid writing it; None for any other name."""
    match = _UNFINISHED.match(name)
    if match is None:
        return None
    inner = _UNFINISHED.match(match.group("of"))  # a restore's staged copy, itself being written
    return (inner or match).group("of"), int(match.group("pid"))


def remove_stale_partials(directory: Path, names: Collection[str]) -> list[Path]:
    """Remove the unfinished copies a killed backup or restore left in ``directory``; those removed.

    Only files named as this module names them, of one of ``names`` or of a snapshot, owned by
    this user, whose writing process is gone: another user's files, and a copy a live process
    (another backup now) is writing, stay.
    """
    removed = []
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            found = unfinished_copy_of(path.name)
            if found is None or not (found[0] in names or parse_snapshot_name(found[0]) is not None):
                continue
            with contextlib.suppress(OSError):
                info = path.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not pid_alive(found[1]):
                    path.unlink()
                    log.info("removed %s, left by an interrupted backup or restore", path)
                    removed.append(path)
    return removed


def _create_private(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def counts(path: Path) -> dict[str, int]:
    """Rows per table a restore brings back."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) if t in tables else 0
                for t in COUNTED}
    finally:
        conn.close()


def verify(path: Path) -> dict[str, int]:
    """Row counts of a usable snapshot; StateError naming the problem otherwise."""
    if unfinished_copy_of(path.name) is not None:
        raise StateError(f"{path} is an unfinished copy left by an interrupted backup or restore, not a"
                         " snapshot: name a finished one (the next backup or restore there removes it)")
    return _verify_copy(path)


def _verify_copy(path: Path) -> dict[str, int]:
    report = inspect_db(path)
    verdict = judge(report, STATE_SCHEMA, history=())
    if verdict.action == "create":
        problem = "does not exist" if not report.exists else "holds no tables"
        raise StateError(f"{path} {problem}: not a steadyserve state snapshot")
    if verdict.action == "refuse":
        raise StateError(f"{path} {verdict.problem}: not a usable state snapshot")
    try:
        return counts(path)
    except sqlite3.Error as exc:
        raise StateError(f"{path} cannot be read: {exc}") from exc


def backup(db_path: Path, dest: Path) -> dict[str, int]:
    """Copy ``db_path`` to ``dest`` (0600) consistently while others write; its row counts.

    The whole database is copied in one step of the backup API under one read transaction
    (WAL: writers go on meanwhile); the copy is checked, then renamed into place.
    """
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_stale_partials(dest.parent, {dest.name})
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    _create_private(tmp)
    try:
        source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5.0)
        try:
            target = sqlite3.connect(tmp, isolation_level=None)
            try:
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            finally:
                target.close()
        finally:
            source.close()
        found = _verify_copy(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        return found
    except sqlite3.Error as exc:
        raise StateError(f"cannot copy {db_path} to {dest}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def snapshots(state_dir: Path) -> list[Snapshot]:
    """Rotated snapshots and manual backups in the state dir, newest first."""
    found = []
    with contextlib.suppress(OSError):
        for path in (state_dir / SNAPSHOT_DIR).iterdir():
            taken = parse_snapshot_name(path.name)
            if taken is not None:
                found.append(Snapshot(path, taken))
    return sorted(found, key=lambda s: s.taken, reverse=True)


def newest_good_snapshot(state_dir: Path) -> Snapshot | None:
    for snapshot in snapshots(state_dir):
        try:
            verify(snapshot.path)
        except StateError:
            continue
        return snapshot
    return None


def take_snapshot(db_path: Path, keep: int, now: dt.datetime | None = None) -> Path:
    """One rotated snapshot of ``db_path``; the oldest beyond ``keep`` are removed."""
    directory = db_path.parent / SNAPSHOT_DIR
    dest = directory / snapshot_name(ROTATED_PREFIX, now or dt.datetime.now(dt.UTC))
    backup(db_path, dest)
    for name in to_prune([p.name for p in directory.iterdir()], keep):
        (directory / name).unlink(missing_ok=True)
    return dest


async def keep_snapshots(db_path: Path, interval_s: float, keep: int,
                         on_failure: Callable[[str], None] = lambda message: None) -> None:
    """Until cancelled: a snapshot now, then one every ``interval_s`` (in a thread: the loop goes on)."""
    if keep <= 0:
        return
    while True:
        try:
            await asyncio.to_thread(take_snapshot, db_path, keep)
        except (OSError, StateError) as exc:
            log.warning("state snapshot failed: %s", exc)
            on_failure(f"snapshot of {db_path} failed: {exc}")
        await asyncio.sleep(interval_s)


@dataclass(frozen=True)
class Restored:
    counts: dict[str, int]
    replaced: Path | None  # where the previous state.db was moved; None if there was none


def restore(snapshot: Path, db_path: Path, now: dt.datetime | None = None) -> Restored:
    """Put a checked copy of ``snapshot`` at ``db_path``; the file it replaces (with its WAL) is kept aside."""
    verify(snapshot)
    db_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_stale_partials(db_path.parent, {db_path.name})
    staged = db_path.with_name(f".{db_path.name}.restoring-{os.getpid()}")
    found = backup(snapshot, staged)
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    replaced = db_path.with_name(f"{db_path.name}.replaced-{stamp}")
    moved = False
    try:
        # The WAL goes with its database: left beside the restored file it would be replayed into it.
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{db_path}{suffix}")
            if source.exists():
                os.replace(source, f"{replaced}{suffix}")
                moved = moved or suffix == ""
        os.replace(staged, db_path)
    finally:
        staged.unlink(missing_ok=True)
    _fsync_dir(db_path.parent)
    write_marker(db_path.parent)
    return Restored(found, replaced if moved else None)


def describe_counts(found: dict[str, int]) -> str:
    one = {"deployments": "deployment", "revisions": "revision", "tokens": "token", "audit": "audit row",
           "events": "event", "secrets": "secret"}
    return ", ".join(plural(found[t], one[t]) for t in COUNTED)


def refusal_message(db_path: Path, problem: str, good: Snapshot | None, leftovers: Sequence[Leftover]) -> str:
    """One line: the file, the problem, the newest good snapshot and how to restore it."""
    state_dir = db_path.parent
    parts = [f"state DB {db_path} {problem}"]
    if good is not None:
        parts.append(f"newest good snapshot: {good.path} (taken {good.taken:%Y-%m-%d %H:%M:%S} UTC);"
                     f" restore it with `steady restore {shlex.quote(str(good.path))}"
                     f" --state-dir {shlex.quote(str(state_dir))}`")
    else:
        parts.append(f"no good snapshot in {state_dir / SNAPSHOT_DIR}; restore a backup with"
                     f" `steady restore FILE --state-dir {shlex.quote(str(state_dir))}`, or move {state_dir} aside"
                     " to start afresh")
    if leftovers:
        parts.append("still running from this state: " + ", ".join(x.describe() for x in leftovers)
                     + " (`steady up` adopts those the restored state knows; stop the others)")
    return "; ".join(parts)


def refusal(db_path: Path, problem: str) -> StateError:
    try:
        leftovers = running_from(db_path.parent)
    except Exception as exc:  # noqa: BLE001 - the message matters more than this detail
        log.warning("cannot list processes: %s", exc)
        leftovers = []
    return StateError(refusal_message(db_path, problem, newest_good_snapshot(db_path.parent), leftovers))
