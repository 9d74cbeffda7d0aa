"""Is the state database usable? Looked at before anything opens it for real.

``inspect_db`` reads a file without changing it (no tables are created, nothing is
recovered); ``judge`` is the pure decision: use it, create it, migrate it, or refuse.
A refusal is never silent and never replaced by a fresh database: the caller turns it
into a ``StateError`` naming the newest good snapshot (see ``backup.refusal``).

The write-ahead log (state.db-wal) is checked first: SQLite ignores one whose header is
damaged, losing the commits it holds, and deletes it when the last connection closes.

"Emptied" means a state.db that is missing, zero bytes long or without tables in a
state directory that shows it had state: the marker file written when the database was
created, a snapshot, or the routing table (``state_history``). A state directory with
none of these is new, and its database is created.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MARKER_NAME = "state.marker"  # written next to state.db when it is created: "this dir had state"
_MARKER_TEXT = ("This state directory has a state database (state.db). If state.db is missing or empty\n"
                "while this file exists, steady refuses to start: restore a snapshot (steady restore).\n")
_HISTORY_FILES = ("routes.json",)
SNAPSHOT_DIR = "snapshots"
PROBLEMS_SHOWN = 3  # of quick_check's lines (up to 100) in the one-line message
# The write-ahead log's 32-byte header (https://www.sqlite.org/fileformat.html#wal_file_format).
_WAL_HEADER = struct.Struct(">IIIIIIII")  # magic, version, page size, checkpoint seq, salt 1, 2, checksum 1, 2
_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums over little-, big-endian words
_WAL_VERSION = 3007000


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
    # Before SQLite opens the file: it ignores a WAL whose header is bad (losing the commits in it,
    # quick_check still "ok") and deletes it when the last connection closes.
    wal_problem = wal_header_problem(Path(f"{path}-wal"))
    if wal_problem is not None:
        return DbReport(path, exists=True, size_bytes=size, error=wal_problem)
    try:
        # mode=rw: never creates the file; nothing below writes.
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5.0, isolation_level=None)
    except sqlite3.Error as exc:
        return DbReport(path, exists=True, size_bytes=size, error=str(exc))
    try:
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            return DbReport(path, exists=True, size_bytes=size, error=f"quick_check: {summarise_problems(problems)}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = frozenset(str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        return DbReport(path, exists=True, size_bytes=size, version=version, tables=tables)
    except sqlite3.Error as exc:
        return DbReport(path, exists=True, size_bytes=size, error=str(exc))
    finally:
        conn.close()


def summarise_problems(rows: Sequence[str], shown: int = PROBLEMS_SHOWN) -> str:
    """quick_check's answer on one line: its first ``shown`` problems and how many more.

    It answers a row per problem, or one row of many lines; "*** in database main ***" heads them.
    """
    lines = [line.strip() for row in rows for line in row.splitlines()
             if line.strip() and not line.startswith("*** in database")]
    more = f" ({len(lines) - shown} more)" if len(lines) > shown else ""
    return "; ".join(lines[:shown]) + more


def wal_header_problem(wal: Path, reads: int = 3) -> str | None:
    """What is wrong with the header of the write-ahead log ``wal``; None if it is valid, empty or absent.

    A live WAL's header is rewritten when a writer starts it afresh (new salts, new checksum): a
    read that sees a bad checksum is repeated, and a header that keeps changing is a live one.
    """
    seen: set[bytes] = set()
    problem = None
    for _ in range(reads):
        try:
            with open(wal, "rb") as f:
                header = f.read(_WAL_HEADER.size)
        except FileNotFoundError:  # checkpointed and removed meanwhile
            return None
        except OSError as exc:
            return f"its write-ahead log {wal} cannot be read ({exc.strerror})"
        if not header:
            return None
        problem = _header_problem(header)
        if problem is None or header in seen:
            break
        seen.add(header)
    else:
        return None  # changing under a writer
    if problem is None:
        return None
    return (f"its write-ahead log {wal} is damaged ({problem}): SQLite would drop the committed changes it"
            f" holds without a word; to accept losing them, move {wal} aside")


def _header_problem(header: bytes) -> str | None:
    if len(header) < _WAL_HEADER.size:
        return f"{len(header)} bytes, shorter than a WAL header"
    magic, version, page_size, _, _, _, checksum_1, checksum_2 = _WAL_HEADER.unpack(header)
    if magic not in _WAL_MAGIC:
        return f"no WAL magic number (0x{magic:08x})"
    if version != _WAL_VERSION:
        return f"unknown WAL format version {version}"
    if not 512 <= page_size <= 65536 or page_size & (page_size - 1):
        return f"invalid page size {page_size}"
    if _wal_checksum(header[:24], big_endian=magic & 1 == 1) != (checksum_1, checksum_2):
        return "header checksum mismatch"
    return None


def _wal_checksum(data: bytes, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum: Fibonacci-weighted sums of 32-bit words."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    s0 = s1 = 0
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


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
