"""The state database: one SQLite file (WAL) in the state directory.

The controller is the only writer; the CLI reads through the same queries.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS processes (
    kind TEXT NOT NULL, id TEXT NOT NULL, pid INTEGER, state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0, endpoint TEXT,
    inflight INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0, started_at REAL, updated_at REAL NOT NULL,
    last_error TEXT, routes_version INTEGER, PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    subject TEXT NOT NULL, type TEXT NOT NULL, message TEXT NOT NULL
);
"""

DB_NAME = "state.db"


@dataclass(frozen=True)
class Event:
    seq: int
    ts: float
    kind: str
    subject: str
    type: str
    message: str


class StateDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)

    @classmethod
    def open_existing(cls, state_dir: Path) -> StateDB:
        path = state_dir / DB_NAME
        if not path.exists():
            raise FileNotFoundError(path)
        return cls(path)

    def close(self) -> None:
        self._conn.close()

    # --- writes (controller) ---------------------------------------------------
    def set_meta(self, **values: str) -> None:
        self._conn.executemany(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            list(values.items()),
        )

    def reset_processes(self) -> None:
        self._conn.execute("DELETE FROM processes")

    def upsert_process(self, row: dict[str, Any]) -> None:
        columns = ["kind", "id", "pid", "state", "generation", "endpoint", "inflight",
                   "requests", "restarts", "started_at", "last_error", "routes_version"]
        values = [row.get(c) for c in columns] + [time.time()]
        placeholders = ", ".join("?" for _ in values)
        updates = ", ".join(f"{c}=excluded.{c}" for c in columns[2:] + ["updated_at"])
        self._conn.execute(
            f"INSERT INTO processes({', '.join(columns)}, updated_at) VALUES({placeholders})"
            f" ON CONFLICT(kind, id) DO UPDATE SET {updates}",
            values,
        )

    def add_event(self, kind: str, subject: str, type: str, message: str, ts: float | None = None) -> Event:
        ts = time.time() if ts is None else ts
        cur = self._conn.execute(
            "INSERT INTO events(ts, kind, subject, type, message) VALUES(?, ?, ?, ?, ?)",
            (ts, kind, subject, type, message),
        )
        return Event(int(cur.lastrowid or 0), ts, kind, subject, type, message)

    # --- reads (CLI and controller) --------------------------------------------------
    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._conn.execute("SELECT key, value FROM meta")}

    def processes(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT * FROM processes ORDER BY CASE kind WHEN 'replica' THEN 0 ELSE 1 END, id"
        )
        return [dict(r) for r in rows]

    def events(self, limit: int = 50, kind: str | None = None, type: str | None = None) -> list[Event]:
        sql, args = "SELECT * FROM events", []
        where = []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if type:
            where.append("type = ?")
            args.append(type)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = self._conn.execute(sql, [*args, limit]).fetchall()
        return [Event(**dict(r)) for r in reversed(rows)]

    def iter_events_after(self, seq: int) -> Iterator[Event]:
        for r in self._conn.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq", (seq,)):
            yield Event(**dict(r))
