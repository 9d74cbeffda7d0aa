"""The log store: one SQLite file (``<state_dir>/logs.db``, 0600, WAL) with an FTS5 index.

    store = LogStore(state_dir / LOGS_DB_NAME)          # the writer (the controller), creates it
    store.insert_many(records)
    store.prune(max_bytes=512 * MIB, max_age_s=7 * 86400, now=time.time())
    reader = LogStore.open_existing(path)               # readers (CLI, API): never create, never write
    reader.query(deployment="digits", level="warning", grep="out of memory", limit=100)

One writer at a time; readers work while it writes (WAL). The writer's connection may be used
from any thread, one call at a time (a lock): the controller runs it in ``asyncio.to_thread``.

Retention deletes the oldest rows (ids grow with arrival, never reused). FTS5 keeps deleted
rows' entries until it merges segments, so each prune also does a bounded amount of merging
and deletes at most a tenth of the rows at a time: the file settles near ``max_bytes``, with
peaks up to about 1.5x while a burst is pruned (freed pages are reused, not returned).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import StateError
from ..sqlite_files import create_private
from .records import LEVELS, LogRecord, level_number

LOGS_DB_NAME = "logs.db"
SCHEMA_VERSION = 1
MAX_QUERY_LIMIT = 10_000
_MAX_DELETE_ROWS = 50_000  # per prune: one call stays short
_MERGE_PAGES = 200  # FTS5 merge work per prune: drops deleted rows' index entries over time
_SIZE_TARGET = 0.85  # of max_bytes, once over it: a prune is not needed again at the next call
_SEVERE = LEVELS["warning"]  # levels at or above it have their own (small) index

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS logs(
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: followers page on it
    ts REAL NOT NULL, level TEXT NOT NULL, level_no INTEGER NOT NULL, kind TEXT NOT NULL,
    deployment TEXT, revision INTEGER, replica TEXT, source TEXT NOT NULL, request_id TEXT,
    message TEXT NOT NULL, fields TEXT, template_id INTEGER);
CREATE INDEX IF NOT EXISTS logs_ts ON logs(ts);
CREATE INDEX IF NOT EXISTS logs_deployment ON logs(deployment, ts);
CREATE INDEX IF NOT EXISTS logs_request ON logs(request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS logs_severe ON logs(level_no, id) WHERE level_no >= {_SEVERE};
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(message, content='logs', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS logs_ai AFTER INSERT ON logs BEGIN
    INSERT INTO logs_fts(rowid, message) VALUES (new.id, new.message); END;
CREATE TRIGGER IF NOT EXISTS logs_ad AFTER DELETE ON logs BEGIN
    INSERT INTO logs_fts(logs_fts, rowid, message) VALUES ('delete', old.id, old.message); END;
CREATE TABLE IF NOT EXISTS log_offsets(
    name TEXT PRIMARY KEY, inode INTEGER NOT NULL, offset INTEGER NOT NULL, skipping INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log_templates(
    id INTEGER PRIMARY KEY, deployment TEXT NOT NULL, template TEXT NOT NULL, count INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, level_no INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log_template_revisions(
    template_id INTEGER NOT NULL, revision INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY(template_id, revision));
CREATE TABLE IF NOT EXISTS log_rollouts(
    deployment TEXT NOT NULL, revision INTEGER NOT NULL, started REAL NOT NULL, checked INTEGER NOT NULL,
    PRIMARY KEY(deployment, revision));
"""

_COLUMNS = "id, ts, level, kind, deployment, revision, replica, source, request_id, message, fields, template_id"


@dataclass(frozen=True)
class StoredRecord:
    id: int
    record: LogRecord

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self.record)}


@dataclass(frozen=True)
class FileOffset:
    """How far a log file has been read: ``skipping``: inside a line too long to keep."""

    name: str
    inode: int
    offset: int
    skipping: bool = False


@dataclass(frozen=True)
class PruneResult:
    by_age: int
    by_size: int


def fts_phrase(text: str) -> str:
    """``text`` as one FTS5 phrase: its words in order. Quotes, ``*``, ``OR``, ``NEAR(``, ``-``
    in it are only text; one with no word matches nothing."""
    return '"' + text.replace("\x00", " ").replace('"', '""') + '"'


class LogStore:
    def __init__(self, path: Path, *, _reader: bool = False) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._in_transaction = False
        if _reader:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 5000")
            return
        # Created 0600 before SQLite opens it: the log holds what services printed. A symlink planted
        # there is refused. (-wal/-shm copy its mode.) See sqlite_files for why not open-and-close.
        create_private(path)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")  # a power cut may lose the last lines; they are in the files
        self._conn.execute("PRAGMA journal_size_limit = 67108864")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(f"{path} is from a newer steadyserve (log schema {version}); remove it or upgrade")
        if version < SCHEMA_VERSION:
            with self.transaction():
                for statement in _SCHEMA.split(";\n"):
                    if statement.strip():
                        self._conn.execute(statement)
                # merge levels with two segments: deleted rows' entries go sooner (see prune)
                self._conn.execute("INSERT INTO logs_fts(logs_fts, rank) VALUES ('usermerge', 2)")
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def open_existing(cls, path: Path) -> LogStore:
        """A read-only store; FileNotFoundError when no controller has created it yet."""
        if not path.is_file():
            raise FileNotFoundError(path)
        return cls(path, _reader=True)

    @property
    def connection(self) -> sqlite3.Connection:
        """For the pattern tables (template_db): use inside ``transaction()``."""
        return self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (nested calls join the outer one)."""
        with self._lock:
            if self._in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._in_transaction = False

    def insert_many(self, records: Sequence[LogRecord]) -> int:
        rows = [(r.ts, r.level, r.level_no, r.kind, r.deployment, r.revision, r.replica, r.source, r.request_id,
                 r.message, orjson.dumps(r.fields).decode() if r.fields else None, r.template_id) for r in records]
        with self.transaction() as conn:
            conn.executemany("INSERT INTO logs(ts, level, level_no, kind, deployment, revision, replica, source,"
                             " request_id, message, fields, template_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def query(self, *, deployment: str | None = None, replica: str | None = None, level: str | None = None,
              since: float | None = None, until: float | None = None, grep: str | None = None,
              request_id: str | None = None, after_id: int | None = None, limit: int = 100) -> list[StoredRecord]:
        """Matching records, oldest first: the newest ``limit`` of them, or with ``after_id``
        (to follow) the first ``limit`` after that id. ``level``: that level and above (raw
        lines count as info); ``replica``: a slot id (r0) or a process label (digits-r0, g0)."""
        if not 1 <= limit <= MAX_QUERY_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_QUERY_LIMIT}, not {limit}")
        where: list[str] = []
        args: list[object] = []
        for column, value in (("deployment", deployment), ("request_id", request_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if replica is not None:
            where.append("(replica = ? OR source = ?)")
            args += [replica, replica]
        if level is not None:
            where.append(f"level_no >= {level_number(level)}")  # a literal: the partial index applies
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        if grep is not None:
            where.append("id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)")
            args.append(fts_phrase(grep))
        if after_id is not None:
            where.append("id > ?")
            args.append(after_id)
        sql = f"SELECT {_COLUMNS} FROM logs{' WHERE ' + ' AND '.join(where) if where else ''}"
        sql += f" ORDER BY id {'ASC' if after_id is not None else 'DESC'} LIMIT {int(limit)}"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        found = [_stored(row) for row in rows]
        # Shown in time order: lines of different processes are stored a batch at a time.
        return sorted(found, key=lambda r: (r.record.ts, r.id))

    def last_id(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT coalesce(max(id), 0) FROM logs").fetchone()[0])

    def template_counts(self, deployment: str, since: float, until: float) -> dict[int, int]:
        """Lines per template of a deployment in [since, until)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT template_id, count(*) FROM logs WHERE deployment = ? AND ts >= ? AND ts < ?"
                " AND template_id IS NOT NULL GROUP BY template_id", (deployment, since, until)).fetchall()
        return {int(t): int(n) for t, n in rows}

    # --- files read so far (tail.py) ---------------------------------------------------
    def offsets(self) -> dict[str, FileOffset]:
        with self._lock:
            rows = self._conn.execute("SELECT name, inode, offset, skipping FROM log_offsets").fetchall()
        return {name: FileOffset(name, inode, offset, bool(skipping)) for name, inode, offset, skipping in rows}

    def save_offsets(self, offsets: Iterable[FileOffset], forget: Iterable[str] = ()) -> None:
        with self.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO log_offsets(name, inode, offset, skipping) VALUES (?,?,?,?)",
                             [(o.name, o.inode, o.offset, int(o.skipping)) for o in offsets])
            conn.executemany("DELETE FROM log_offsets WHERE name = ?", [(name,) for name in forget])

    # --- retention -------------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes of the file in use (free pages are not counted: they are reused)."""
        with self._lock:
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * page_size)

    def prune(self, max_bytes: int, max_age_s: float, now: float) -> PruneResult:
        """Delete rows older than ``max_age_s``, then the oldest while the file is over ``max_bytes``."""
        with self.transaction() as conn:
            by_age = conn.execute(
                "DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE ts < ? ORDER BY ts LIMIT ?)",
                (now - max_age_s, _MAX_DELETE_ROWS)).rowcount
            conn.execute("INSERT INTO logs_fts(logs_fts, rank) VALUES ('merge', ?)", (_MERGE_PAGES,))
        used = self.used_bytes()
        by_size = 0
        if used > max_bytes:
            with self.transaction() as conn:
                low, high = conn.execute("SELECT min(id), max(id) FROM logs").fetchone()
                if low is not None:
                    rows = high - low + 1  # ids are contiguous but for rows pruned by age: close enough
                    wanted = math.ceil(rows * (used - _SIZE_TARGET * max_bytes) / used)
                    cut = min(wanted, max(1, rows // 10), _MAX_DELETE_ROWS)
                    by_size = conn.execute("DELETE FROM logs WHERE id < ?", (low + cut,)).rowcount
        return PruneResult(by_age, by_size)


def _stored(row: tuple[Any, ...]) -> StoredRecord:
    id_, ts, level, kind, deployment, revision, replica, source, request_id, message, fields, template_id = row
    return StoredRecord(id_, LogRecord(ts, level if level in LEVELS else "info", deployment, revision, replica,
                                       source, request_id, message, kind,
                                       orjson.loads(fields) if fields else {}, template_id))
