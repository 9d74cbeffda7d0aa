"""The state database: one SQLite file (WAL) in the state directory.

The controller is the only writer; the CLI reads through the same queries.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 4
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS processes (
    kind TEXT NOT NULL, deployment TEXT NOT NULL DEFAULT '', id TEXT NOT NULL, pid INTEGER,
    state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0, endpoint TEXT,
    inflight INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0, started_at REAL, updated_at REAL NOT NULL,
    last_error TEXT, routes_version INTEGER, revision INTEGER, PRIMARY KEY (kind, deployment, id)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    deployment TEXT NOT NULL DEFAULT '', subject TEXT NOT NULL, type TEXT NOT NULL, message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY, revision INTEGER NOT NULL, replicas INTEGER NOT NULL,
    previous_revision INTEGER, deleting INTEGER NOT NULL DEFAULT 0, next_index INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, digest TEXT NOT NULL,
    rate_per_s REAL, burst INTEGER, created_at REAL NOT NULL, revoked_at REAL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, source TEXT NOT NULL, result TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 1, last_ts REAL  -- aggregated refusals: how many, and the last one's time
);
CREATE TABLE IF NOT EXISTS revisions (
    deployment TEXT NOT NULL, revision INTEGER NOT NULL, spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    config TEXT,  -- the resolved DeploymentConfig (JSON): recovery needs no import of the service
    PRIMARY KEY (deployment, revision)
);
CREATE TABLE IF NOT EXISTS secrets (
    deployment TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, value TEXT NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (deployment, name, version)
);
"""

DB_NAME = "state.db"


@dataclass(frozen=True)
class Event:
    seq: int
    ts: float
    kind: str
    deployment: str
    subject: str
    type: str
    message: str


class StateDB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = self._connect(path)
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        has_tables = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if has_tables and version != SCHEMA_VERSION:
            # A state dir from an older steadyserve: keep it aside, start afresh.
            self._conn.close()
            path.rename(path.with_name(f"{path.name}.schema-v{version}-{int(time.time())}"))
            self._conn = self._connect(path)
        self._conn.executescript(SCHEMA)
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

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
        columns = ["kind", "deployment", "id", "pid", "state", "generation", "endpoint", "inflight",
                   "requests", "restarts", "started_at", "last_error", "routes_version", "revision"]
        values = [row.get(c, "" if c == "deployment" else None) for c in columns] + [time.time()]
        placeholders = ", ".join("?" for _ in values)
        updates = ", ".join(f"{c}=excluded.{c}" for c in columns[3:] + ["updated_at"])
        self._conn.execute(
            f"INSERT INTO processes({', '.join(columns)}, updated_at) VALUES({placeholders})"
            f" ON CONFLICT(kind, deployment, id) DO UPDATE SET {updates}",
            values,
        )

    def save_deployments(self, rows: list[dict[str, Any]]) -> None:
        """The desired state, replaced as a whole (one transaction)."""
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute("DELETE FROM deployments")
            self._conn.executemany(
                "INSERT INTO deployments(name, revision, replicas, previous_revision, deleting, next_index)"
                " VALUES(:name, :revision, :replicas, :previous_revision, :deleting, :next_index)", rows)

    def desired_deployments(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM deployments ORDER BY name")]

    def revision_spec(self, deployment: str, revision: int) -> str | None:
        row = self._conn.execute("SELECT spec FROM revisions WHERE deployment = ? AND revision = ?",
                                 (deployment, revision)).fetchone()
        return None if row is None else str(row["spec"])

    def revision_config(self, deployment: str, revision: int) -> str | None:
        """The resolved DeploymentConfig (JSON) recorded with a revision, if any."""
        row = self._conn.execute("SELECT config FROM revisions WHERE deployment = ? AND revision = ?",
                                 (deployment, revision)).fetchone()
        return None if row is None or row["config"] is None else str(row["config"])

    # --- tokens and audit -------------------------------------------------------------
    def add_token(self, token_id: str, name: str, role: str, digest: str,
                  rate_per_s: float | None, burst: int | None) -> None:
        try:
            self._conn.execute(
                "INSERT INTO tokens(id, name, role, digest, rate_per_s, burst, created_at) VALUES(?,?,?,?,?,?,?)",
                (token_id, name, role, digest, rate_per_s, burst, time.time()))
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"a token named {name!r} exists; revoke it first or pick another name") from exc

    def revoke_token(self, name: str) -> bool:
        cur = self._conn.execute("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                                 (time.time(), name))
        return cur.rowcount > 0

    def tokens(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        sql = "SELECT * FROM tokens" + ("" if include_revoked else " WHERE revoked_at IS NULL") + " ORDER BY name"
        return [dict(r) for r in self._conn.execute(sql)]

    def tokens_stamp(self) -> tuple[int, int]:
        """Changes whenever a token is added or revoked."""
        row = self._conn.execute("SELECT count(*), count(revoked_at) FROM tokens").fetchone()
        return int(row[0]), int(row[1])

    def add_audit(self, actor: str, action: str, target: str, source: str, result: str,
                  ts: float | None = None) -> None:
        self._conn.execute("INSERT INTO audit(ts, actor, action, target, source, result) VALUES(?,?,?,?,?,?)",
                           (time.time() if ts is None else ts, actor, action, target, source, result))

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT * FROM audit ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in reversed(rows)]

    def delete_process(self, kind: str, deployment: str, id: str) -> None:
        self._conn.execute("DELETE FROM processes WHERE kind = ? AND deployment = ? AND id = ?",
                           (kind, deployment, id))

    def add_event(self, kind: str, subject: str, type: str, message: str, deployment: str = "",
                  ts: float | None = None) -> Event:
        ts = time.time() if ts is None else ts
        cur = self._conn.execute(
            "INSERT INTO events(ts, kind, deployment, subject, type, message) VALUES(?, ?, ?, ?, ?, ?)",
            (ts, kind, deployment, subject, type, message),
        )
        return Event(int(cur.lastrowid or 0), ts, kind, deployment, subject, type, message)

    def record_revision(self, deployment: str, spec_json: str, config_json: str | None = None) -> tuple[int, bool]:
        """The revision number for this spec; a new one only if it differs from the latest.

        ``config_json`` (the resolved DeploymentConfig) lets recovery skip importing the service.
        """
        row = self._conn.execute(
            "SELECT revision, spec FROM revisions WHERE deployment = ? ORDER BY revision DESC LIMIT 1",
            (deployment,),
        ).fetchone()
        if row is not None and row["spec"] == spec_json:
            return int(row["revision"]), False
        revision = 1 if row is None else int(row["revision"]) + 1
        self._conn.execute(
            "INSERT INTO revisions(deployment, revision, spec, created_at, config) VALUES(?, ?, ?, ?, ?)",
            (deployment, revision, spec_json, time.time(), config_json),
        )
        return revision, True

    def revisions(self, deployment: str) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT * FROM revisions WHERE deployment = ? ORDER BY revision", (deployment,))
        return [dict(r) for r in rows]

    # --- reads (CLI and controller) --------------------------------------------------
    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._conn.execute("SELECT key, value FROM meta")}

    def processes(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT * FROM processes ORDER BY CASE kind WHEN 'replica' THEN 0 ELSE 1 END, deployment, id"
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
