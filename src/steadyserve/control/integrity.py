"""Is the state database usable? Looked at before anything opens it for real.

``inspect_db`` reads a file without changing it (no tables are created, nothing is
recovered); ``judge`` is the pure decision: use it, create it, migrate it, or refuse.
A refusal is never silent and never replaced by a fresh database: the caller turns it
into a ``StateError`` naming the newest good snapshot (see ``statedb.damage_error``).

"Emptied" means a state.db that is missing, zero bytes long or without tables in a
state directory that shows it had state: the marker file written when the database was
created, a snapshot, or the routing table (``state_history``). A state directory with
none of these is new, and its database is created.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MARKER_NAME = "state.marker"  # written next to state.db when it is created: "this dir had state"
_MARKER_TEXT = ("This state directory has a state database (state.db). If state.db is missing or empty\n"
                "while this file exists, steady refuses to start: restore a snapshot (steady restore).\n")
_HISTORY_FILES = ("routes.json",)
SNAPSHOT_DIR = "snapshots"


@dataclass(frozen=True)
class DbReport:
    """What a state.db file looks like, read without changing it."""

    path: Path
    exists: bool
    size_bytes: int = 0
    version: int = 0
    tables: frozenset[str] = frozenset()
    error: str | None = None  # the file cannot be read as a SQLite database, or quick_check failed


Action = Literal["use", "create", "migrate", "refuse"]


@dataclass(frozen=True)
class Verdict:
    action: Action
    problem: str = ""  # for "refuse": what is wrong, as the end of "<file> ..."


@dataclass(frozen=True)
class Schema:
    """What a usable database holds: its version, the tables of that version, what migrates."""

    version: int
    tables: frozenset[str]
    migrations: dict[int, frozenset[str]]  # older version -> tables it must have to be migrated


def inspect_db(path: Path) -> DbReport:
    """Read ``path``'s header, tables and ``PRAGMA quick_check`` without creating or writing anything."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return DbReport(path, exists=False)
    except OSError as exc:
        return DbReport(path, exists=True, error=f"cannot be read ({exc.strerror})")
    if size == 0:
        return DbReport(path, exists=True)
    try:
        # mode=rw: never creates the file; nothing below writes.
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5.0, isolation_level=None)
    except sqlite3.Error as exc:
        return DbReport(path, exists=True, size_bytes=size, error=str(exc))
    try:
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            return DbReport(path, exists=True, size_bytes=size, error=f"quick_check: {problems[0]}{more}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = frozenset(str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        return DbReport(path, exists=True, size_bytes=size, version=version, tables=tables)
    except sqlite3.Error as exc:
        return DbReport(path, exists=True, size_bytes=size, error=str(exc))
    finally:
        conn.close()


def judge(report: DbReport, schema: Schema, history: Collection[str]) -> Verdict:
    """What to do with a state.db, from what it looks like and whether its directory had state."""
    if report.error is not None:
        return Verdict("refuse", f"is damaged: {report.error}")
    ours = report.tables - {"sqlite_sequence"}
    if not ours:
        if not history:
            return Verdict("create")
        what = ("is missing" if not report.exists else "is empty (0 bytes)" if report.size_bytes == 0
                else "holds no tables")
        return Verdict("refuse", f"{what}, but {report.path.parent} had state ({', '.join(history)})")
    if report.version > schema.version:
        return Verdict("refuse", f"has schema version {report.version}, newer than this steadyserve's"
                                 f" ({schema.version}): run a newer steadyserve")
    if report.version == schema.version:
        missing = schema.tables - ours
        if missing:
            return Verdict("refuse", f"is damaged: tables missing ({', '.join(sorted(missing))})")
        return Verdict("use")
    if report.version in schema.migrations:
        missing = schema.migrations[report.version] - ours
        if missing:
            return Verdict("refuse", f"is damaged: schema version {report.version} without tables"
                                     f" {', '.join(sorted(missing))}")
        return Verdict("migrate")
    known = ", ".join(str(v) for v in sorted(schema.migrations))
    if report.version == 0:
        return Verdict("refuse", f"is not a steadyserve state database (tables {', '.join(sorted(ours))},"
                                 " no schema version)")
    return Verdict("refuse", f"has schema version {report.version}, which this steadyserve cannot migrate"
                             f" (it migrates {known} to {schema.version})")


def state_history(state_dir: Path) -> list[str]:
    """The signs that ``state_dir`` held state before: a missing database there was lost, not new."""
    found = [name for name in (MARKER_NAME, *_HISTORY_FILES) if (state_dir / name).exists()]
    with contextlib.suppress(OSError):
        if any((state_dir / SNAPSHOT_DIR).glob("*.db")):
            found.append(f"{SNAPSHOT_DIR}/")
    return found


def write_marker(state_dir: Path) -> None:
    """Best effort: a read-only state dir still works, it only loses this safeguard."""
    path = state_dir / MARKER_NAME
    if path.exists():
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_MARKER_TEXT)
