"""The history's durable tier: per-minute samples in SQLite, written only when they change.

Rows hold a series' value from their time on (a NaN: the series went away), so an idle
instance writes nothing and a query finds the value at any time from the row before it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from ..errors import StateError
from ..sqlite_files import create_private
from .query import Labels, Sample, SeriesKey

OBSERVABILITY_DB = "observability.db"  # in the state directory: history, alerts

_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS history_series (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL, UNIQUE (name, labels));
CREATE TABLE IF NOT EXISTS history_samples (
    series INTEGER NOT NULL, ts REAL NOT NULL, value REAL, PRIMARY KEY (series, ts)) WITHOUT ROWID;
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection to a private SQLite file (created 0600)."""
    create_private(path)
    db = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout=10000")
    return db


class SqliteHistoryStore:
    def __init__(self, path: Path, db: sqlite3.Connection | None = None) -> None:
        self.path = path
        if db is None:
            db = connect(path)
            db.executescript(_SCHEMA)
        self._db = db
        self._ids: dict[SeriesKey, int] = {}
        self._lock = threading.Lock()  # the API's threads read while the controller writes

    @classmethod
    def open_existing(cls, path: Path) -> SqliteHistoryStore:
        """For readers (the CLI): read-only; a damaged file is a StateError that says so."""
        if path.is_symlink() or not path.is_file():
            raise StateError(f"{path}: no metrics history there (or not a regular file)")
        try:
            db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=10.0,
                                 check_same_thread=False, isolation_level=None)
            db.execute("SELECT count(*) FROM history_series").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: not a readable metrics history ({exc}); a backup of the state"
                             " directory (steady backup) does not hold it: remove the file to start a new one") from None
        return cls(path, db)

    def _series_id(self, key: SeriesKey) -> int:
        found = self._ids.get(key)
        if found is None:
            labels = json.dumps(key[1])
            self._db.execute("INSERT OR IGNORE INTO history_series (name, labels) VALUES (?, ?)", (key[0], labels))
            found = self._ids[key] = self._db.execute(
                "SELECT id FROM history_series WHERE name = ? AND labels = ?", (key[0], labels)).fetchone()[0]
        return found

    def write(self, ts: float, values: Mapping[SeriesKey, float]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                rows = [(self._series_id(k), ts, None if math.isnan(v) else v) for k, v in values.items()]
                self._db.executemany("INSERT OR REPLACE INTO history_samples VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def select(self, name: str, since: float, until: float) -> dict[Labels, list[Sample]]:
        """Each series' rows in (since, until] and the last one at or before ``since``."""
        try:
            return self._select(name, since, until)
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            raise StateError(f"{self.path}: the metrics history cannot be read ({exc})") from None

    def _select(self, name: str, since: float, until: float) -> dict[Labels, list[Sample]]:
        with self._lock:
            series = self._db.execute("SELECT id, labels FROM history_series WHERE name = ?", (name,)).fetchall()
            found: dict[Labels, list[Sample]] = {}
            for series_id, labels_json in series:
                before = self._db.execute(
                    "SELECT ts, value FROM history_samples WHERE series = ? AND ts <= ? ORDER BY ts DESC LIMIT 1",
                    (series_id, since)).fetchall()
                rows = self._db.execute(
                    "SELECT ts, value FROM history_samples WHERE series = ? AND ts > ? AND ts <= ? ORDER BY ts",
                    (series_id, since, until)).fetchall()
                samples = [(ts, math.nan if v is None else v) for ts, v in (*before, *rows)]
                if samples:
                    found[tuple((str(k), str(v)) for k, v in json.loads(labels_json))] = samples
            return found

    def earliest(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(ts) FROM history_samples").fetchone()
        return None if row[0] is None else float(row[0])

    def prune(self, before: float) -> None:
        """Drop rows older than ``before``, keeping each series' last one before it (its value then)."""
        with self._lock:
            self._db.execute(
                "DELETE FROM history_samples WHERE ts < ? AND ts < (SELECT MAX(ts) FROM history_samples AS s"
                " WHERE s.series = history_samples.series AND s.ts < ?)", (before, before))

    def close(self) -> None:
        with self._lock:
            self._db.close()
