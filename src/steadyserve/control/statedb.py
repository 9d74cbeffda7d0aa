"""The state database: one SQLite file (WAL) in the state directory.

The controller is the only writer; the CLI reads through the same queries. Every
opener checks the file first (``integrity``): a damaged, emptied or unknown-version
database raises ``StateError`` naming the newest good snapshot; it is never replaced.
A version-3 database is migrated in place, after a copy of it is kept aside.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StateError
from .integrity import Action, Schema, inspect_db, judge, state_history, write_marker

SCHEMA_VERSION = 5
# Audit retention (README, "Access control"): pruned by the controller on every audit write.
AUDIT_MAX_AGE_S = 90 * 24 * 3600.0
_REFUSED = "(result GLOB '4[0-9][0-9]: *')"  # a refused call's row ("401: <reason>"), not a change's
AUDIT_MAX_ROWS = 100_000  # a refusal row stands for up to thousands of calls (``count``)
_AUDIT_CURSOR = "audit_cursor:"  # meta key prefix: how far a gateway slot's refusals are recorded
_AUDIT_INSERT = ("INSERT INTO audit(ts, actor, action, target, source, result, count, last_ts)"
                 " VALUES(:ts, :actor, :action, :target, :source, :result, :count, :last_ts)")
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS processes (
    kind TEXT NOT NULL, deployment TEXT NOT NULL DEFAULT '', id TEXT NOT NULL, pid INTEGER,
    state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0, endpoint TEXT,
    inflight INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0, started_at REAL, updated_at REAL NOT NULL,
    last_error TEXT, routes_version INTEGER, revision INTEGER,
    node TEXT,  -- the cluster node a replica runs on (NULL: this machine)
    credential TEXT,  -- what callers of a networked replica present (never shown: see public_process)
    PRIMARY KEY (kind, deployment, id)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    deployment TEXT NOT NULL DEFAULT '', subject TEXT NOT NULL, type TEXT NOT NULL, message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY, revision INTEGER NOT NULL, replicas INTEGER NOT NULL,
    previous_revision INTEGER, deleting INTEGER NOT NULL DEFAULT 0, next_index INTEGER NOT NULL DEFAULT 0,
    spec_replicas INTEGER  -- the count the last applied spec asked for (a later `steady scale` overrides it)
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

# The tables a database of each version must hold. Fixed lists, not parsed from SCHEMA:
# a table added to SCHEMA later is created on open and must not make older files "damaged".
_V3_TABLES = frozenset({"meta", "processes", "events", "deployments", "tokens", "audit", "revisions"})
_V4_TABLES = _V3_TABLES | {"secrets"}
STATE_SCHEMA = Schema(version=SCHEMA_VERSION, tables=_V4_TABLES, migrations={3: _V3_TABLES, 4: _V4_TABLES})
# Columns added since version 3, besides the new tables of SCHEMA: (table, column, declaration).
_NEW_COLUMNS = (("audit", "count", "INTEGER NOT NULL DEFAULT 1"), ("audit", "last_ts", "REAL"),  # 4
                ("revisions", "config", "TEXT"), ("deployments", "spec_replicas", "INTEGER"),  # 4
                ("processes", "node", "TEXT"), ("processes", "credential", "TEXT"))  # 5


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
    def __init__(self, path: Path, create: bool = True) -> None:
        """Open (after checking) the state database at ``path``.

        ``create``: make a new one where the state dir never had state; else FileNotFoundError.
        """
        self.path = path
        action = self.check_file(path)
        if action == "create" and not create:
            raise FileNotFoundError(path)
        if action == "migrate":
            _migrate(path)
        self._conn = self._connect(path)
        self._conn.executescript(SCHEMA)
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        write_marker(path.parent)

    @staticmethod
    def check_file(path: Path) -> Action:
        """What to do with the file (use, create or migrate); StateError, one line saying what to do, otherwise."""
        verdict = judge(inspect_db(path), STATE_SCHEMA, state_history(path.parent))
        if verdict.action == "refuse":
            from .backup import refusal

            raise refusal(path, verdict.problem)
        return verdict.action

    @classmethod
    def check(cls, path: Path) -> bool:
        """Whether a usable state database is at ``path`` (False: none yet); raises StateError."""
        return cls.check_file(path) != "create"

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:  # damaged between the check and now
            from .backup import refusal

            raise refusal(path, f"is damaged: {exc}") from exc
        return conn

    @classmethod
    def open_existing(cls, state_dir: Path) -> StateDB:
        """The state database of ``state_dir``; FileNotFoundError where it never had one."""
        return cls(state_dir / DB_NAME, create=False)

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
        self.upsert_processes([row])

    def upsert_processes(self, rows: list[dict[str, Any]]) -> None:
        """Rows of the processes table, written in one transaction (none: nothing is written)."""
        if not rows:
            return
        with self._conn:
            self._conn.execute("BEGIN")
            for row in rows:
                self._upsert_process(row)

    def _upsert_process(self, row: dict[str, Any]) -> None:
        columns = ["kind", "deployment", "id", "pid", "state", "generation", "endpoint", "inflight",
                   "requests", "restarts", "started_at", "last_error", "routes_version", "revision", "node",
                   "credential"]
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
                "INSERT INTO deployments(name, revision, replicas, previous_revision, deleting, next_index,"
                " spec_replicas) VALUES(:name, :revision, :replicas, :previous_revision, :deleting, :next_index,"
                " :spec_replicas)", rows)

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
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute("INSERT INTO audit(ts, actor, action, target, source, result) VALUES(?,?,?,?,?,?)",
                               (time.time() if ts is None else ts, actor, action, target, source, result))
            self.prune_audit()

    def add_audit_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Aggregated rows of refused calls (as ``record_refusals`` takes them) in one transaction."""
        if not rows:
            return
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany(_AUDIT_INSERT, rows)
            self.prune_audit()

    def record_refusals(self, rows: Sequence[dict[str, Any]], reporter: str, cursor: str) -> None:
        """Aggregated rows of refused calls and how far ``reporter``'s reports are recorded, in one
        transaction: a controller killed in between records them again neither twice nor never.

        A row: ts, actor, action, target, source, result, count, last_ts.
        """
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany(_AUDIT_INSERT, rows)
            self._conn.execute(
                "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (_AUDIT_CURSOR + reporter, cursor))
            self.prune_audit()

    def audit_cursor(self, reporter: str) -> str | None:
        """What ``record_refusals`` last stored for ``reporter`` (a gateway slot)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (_AUDIT_CURSOR + reporter,)).fetchone()
        return None if row is None else str(row["value"])

    def prune_audit(self, now: float | None = None, max_age_s: float = AUDIT_MAX_AGE_S,
                    max_rows: int = AUDIT_MAX_ROWS) -> int:
        """Keep the newest ``max_rows`` refused-call rows and the newest ``max_rows`` other rows
        (changes), none older than ``max_age_s``; how many went.

        Counted apart, so a flood of refusals (anyone who can reach a port can cause them)
        never pushes the record of a change out. The count is checked only while the table may
        hold more rows than that (its seq span), and the age delete walks the primary key from
        the oldest row: a call that deletes nothing costs next to nothing (it runs on every
        write). Rows are in about time order (a refusal row is written seconds after its ``ts``).
        """
        cutoff = (time.time() if now is None else now) - max_age_s
        by_count = 0
        span = self._conn.execute("SELECT coalesce(max(seq) - min(seq) + 1, 0) FROM audit").fetchone()[0]
        if span > max_rows:
            for kind in (_REFUSED, f"NOT {_REFUSED}"):
                by_count += self._conn.execute(
                    f"DELETE FROM audit WHERE {kind} AND seq <= (SELECT seq FROM audit WHERE {kind}"
                    " ORDER BY seq DESC LIMIT 1 OFFSET ?)", (max_rows,)).rowcount
        by_age = self._conn.execute(
            "DELETE FROM audit WHERE seq < coalesce((SELECT seq FROM audit WHERE ts >= ? ORDER BY seq LIMIT 1),"
            " (SELECT max(seq) + 1 FROM audit))", (cutoff,)).rowcount
        return int(by_count) + int(by_age)

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
            "SELECT revision, spec, config FROM revisions WHERE deployment = ? ORDER BY revision DESC LIMIT 1",
            (deployment,),
        ).fetchone()
        if row is not None and row["spec"] == spec_json:
            if config_json is not None and row["config"] != config_json:  # e.g. new alert rules: no rollout,
                self._conn.execute(  # but a restarted controller must find them
                    "UPDATE revisions SET config = ? WHERE deployment = ? AND revision = ?",
                    (config_json, deployment, row["revision"]))
            return int(row["revision"]), False
        revision = 1 if row is None else int(row["revision"]) + 1
        self._conn.execute(
            "INSERT INTO revisions(deployment, revision, spec, created_at, config) VALUES(?, ?, ?, ?, ?)",
            (deployment, revision, spec_json, time.time(), config_json),
        )
        return revision, True

    # --- secrets (values never leave through the API; see control/secrets.py) ------------------
    def put_secret(self, deployment: str, name: str, value: str) -> int:
        """The version holding ``value``: the latest if it holds the same value, else a new one."""
        row = self._conn.execute(
            "SELECT version, value FROM secrets WHERE deployment = ? AND name = ? ORDER BY version DESC LIMIT 1",
            (deployment, name)).fetchone()
        if row is not None and row["value"] == value:
            return int(row["version"])
        version = 1 if row is None else int(row["version"]) + 1
        self._conn.execute("INSERT INTO secrets(deployment, name, version, value, created_at) VALUES(?,?,?,?,?)",
                           (deployment, name, version, value, time.time()))
        return version

    def latest_secret_version(self, deployment: str, name: str) -> int | None:
        row = self._conn.execute("SELECT max(version) FROM secrets WHERE deployment = ? AND name = ?",
                                 (deployment, name)).fetchone()
        return None if row[0] is None else int(row[0])

    def secret_values(self, deployment: str, versions: dict[str, int]) -> dict[str, str]:
        values = {}
        for name, version in versions.items():
            row = self._conn.execute("SELECT value FROM secrets WHERE deployment = ? AND name = ? AND version = ?",
                                     (deployment, name, version)).fetchone()
            if row is None:
                raise KeyError(f"secret {name} version {version} of {deployment} is not in the state DB")
            values[name] = str(row["value"])
        return values

    def all_secret_values(self, deployment: str) -> list[str]:
        """Every value any revision of a deployment has held (what to redact from its replicas' errors)."""
        return [str(r["value"]) for r in self._conn.execute(
            "SELECT value FROM secrets WHERE deployment = ?", (deployment,))]

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

    def public_processes(self) -> list[dict[str, Any]]:
        """``processes`` as the CLI and the API show them: without replicas' credentials."""
        return [{k: v for k, v in row.items() if k != "credential"} for row in self.processes()]

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

    def prune_events(self, keep: int) -> int:
        """Keep the newest ``keep`` events (what a report or the dashboard reads back); how many went."""
        return self._conn.execute("DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?",
                                  (keep,)).rowcount

    def events_between(self, since: float, until: float, deployment: str | None = None,
                       limit: int = 100_000) -> list[Event]:
        """Events in [since, until] in order (of one deployment, with its replicas', if named)."""
        sql = "SELECT * FROM events WHERE ts >= ? AND ts <= ?"
        args: list[Any] = [since, until]
        if deployment is not None:
            sql += " AND deployment = ?"
            args.append(deployment)
        rows = self._conn.execute(sql + " ORDER BY seq LIMIT ?", [*args, limit]).fetchall()
        return [Event(**dict(r)) for r in rows]


def _migrate(path: Path) -> None:
    """An older version to the current one in place, in one transaction; the old file is kept aside first."""
    from .backup import backup

    old = int(inspect_db(path).version or 0)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    backup(path, path.with_name(f"{path.name}.schema-v{old}-{stamp}"))
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        # Not migrated by another opener meanwhile:
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) in STATE_SCHEMA.migrations:
            for table, column, declaration in _NEW_COLUMNS:
                columns = {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            for statement in SCHEMA.split(";"):  # new tables, inside this transaction
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StateError(f"state DB {path}: migrating schema version {old} to {SCHEMA_VERSION} failed ({exc});"
                         " the file is unchanged") from exc
    finally:
        conn.close()
