"""The call-rate history behind forecasts, kept in ``observability.db`` across controller restarts.

A season is a day by default: a restarted controller that forgot the rates would forecast nothing
for a day. Each deployment's closed buckets (start time, calls/s) are written in batches; on start,
the autoscaler reads back the ones of its bucket size.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from ..metrics.store import connect

_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS autoscaling_rates (
    deployment TEXT NOT NULL, bucket_s REAL NOT NULL, ts REAL NOT NULL, rate REAL NOT NULL,
    PRIMARY KEY (deployment, bucket_s, ts)) WITHOUT ROWID;
"""


class RateStore:
    """Open for the controller's life: closing a connection would drop the process's SQLite locks on
    the file that the history and alert stores hold too (see sqlite_files.py)."""

    def __init__(self, path: Path) -> None:
        self._db: sqlite3.Connection = connect(path)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def write(self, deployment: str, bucket_s: float, rows: Sequence[tuple[float, float]]) -> None:
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO autoscaling_rates VALUES (?, ?, ?, ?)",
                                     [(deployment, bucket_s, ts, rate) for ts, rate in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def load(self, deployment: str, bucket_s: float, since: float) -> list[tuple[float, float]]:
        with self._lock:
            return [(float(ts), float(rate)) for ts, rate in self._db.execute(
                "SELECT ts, rate FROM autoscaling_rates WHERE deployment = ? AND bucket_s = ? AND ts >= ? ORDER BY ts",
                (deployment, bucket_s, since))]

    def prune(self, deployment: str, kept_s: dict[float, float], now: float) -> None:
        """Rows older than what each bucket size keeps; rows of other bucket sizes (another season) go."""
        with self._lock:
            sizes = [row[0] for row in self._db.execute(
                "SELECT DISTINCT bucket_s FROM autoscaling_rates WHERE deployment = ?", (deployment,))]
            for size in sizes:
                if size in kept_s:
                    self._db.execute("DELETE FROM autoscaling_rates WHERE deployment = ? AND bucket_s = ? AND ts < ?",
                                     (deployment, size, now - kept_s[size] - size))
                else:
                    self._db.execute("DELETE FROM autoscaling_rates WHERE deployment = ? AND bucket_s = ?",
                                     (deployment, size))

    def forget(self, keep: set[str]) -> None:
        """Deployments that no longer exist."""
        with self._lock:
            names = [row[0] for row in self._db.execute("SELECT DISTINCT deployment FROM autoscaling_rates")]
            for name in names:
                if name not in keep:
                    self._db.execute("DELETE FROM autoscaling_rates WHERE deployment = ?", (name,))
