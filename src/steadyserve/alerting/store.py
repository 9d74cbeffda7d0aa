"""Alert states and recent alerts in SQLite, for ``steady alerts`` and for restarts.

Two tables in ``<state_dir>/observability.db`` (shared with the metrics history; ours are
named ``alert_*``): ``alert_states``, the pending and firing alerts as the controller last
evaluated them (a restarted controller goes on from them, so a firing alert is not notified
again), and ``alert_history``, one row per alert that fired, resolved or not, kept for
``keep_s`` and at most ``keep_rows``. The file is the owner's only (0600), in WAL mode.
Writes happen when something changed: an idle instance writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..errors import StateError
from ..sqlite_files import create_private
from .evaluate import AlertState, LabelPairs, Phase

OBSERVABILITY_DB = "observability.db"
KEEP_ROWS = 1000
KEEP_S = 14 * 86400.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_states (
    key TEXT PRIMARY KEY, phase TEXT NOT NULL, labels TEXT NOT NULL, annotations TEXT NOT NULL,
    value REAL, evaluated_at REAL NOT NULL, active_since REAL, fired_at REAL, resolved_at REAL
);
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, deployment TEXT NOT NULL,
    alertname TEXT NOT NULL, severity TEXT NOT NULL, labels TEXT NOT NULL, annotations TEXT NOT NULL,
    value REAL, fired_at REAL NOT NULL, resolved_at REAL
);
CREATE INDEX IF NOT EXISTS alert_history_open ON alert_history(key) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS alert_history_fired ON alert_history(fired_at);
"""


@dataclass(frozen=True)
class AlertRecord:
    """One alert that fired: while it fires, and after it resolved."""

    key: str
    deployment: str
    alertname: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float | None
    fired_at: float
    resolved_at: float | None

    @property
    def summary(self) -> str:
        return self.annotations.get("summary", "")


def _pairs(text: str) -> LabelPairs:
    return tuple(sorted((str(k), str(v)) for k, v in json.loads(text).items()))


def _json(pairs: LabelPairs) -> str:
    return json.dumps(dict(pairs), sort_keys=True)


def _state(row: sqlite3.Row) -> AlertState:
    return AlertState(key=row["key"], phase=Phase(row["phase"]), labels=_pairs(row["labels"]),
                      annotations=_pairs(row["annotations"]), value=row["value"], evaluated_at=row["evaluated_at"],
                      active_since=row["active_since"], fired_at=row["fired_at"], resolved_at=row["resolved_at"])


def _record(row: sqlite3.Row) -> AlertRecord:
    return AlertRecord(key=row["key"], deployment=row["deployment"], alertname=row["alertname"],
                       severity=row["severity"], labels=dict(_pairs(row["labels"])),
                       annotations=dict(_pairs(row["annotations"])), value=row["value"], fired_at=row["fired_at"],
                       resolved_at=row["resolved_at"])


class AlertStore:
    def __init__(self, path: Path, keep_rows: int = KEEP_ROWS, keep_s: float = KEEP_S, create: bool = True) -> None:
        """Open (``create``: and make, 0600) the file; StateError if it is not a usable SQLite file."""
        self.path = path
        self.keep_rows = keep_rows
        self.keep_s = keep_s
        self._lock = threading.Lock()  # the control API may read from another thread
        self._saved: dict[str, AlertState] | None = None
        try:
            if create:
                create_private(path)  # never open-and-close it: that would drop this process's SQLite locks
            self._conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=5.0,
                                         isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot use the alert store: {exc}") from exc
        except OSError as exc:
            raise StateError(f"{path}: cannot open the alert store: {exc.strerror}") from exc

    @classmethod
    def open_existing(cls, path: Path) -> AlertStore | None:
        """For readers (the CLI): None where no controller ever wrote one."""
        if not path.exists():
            return None
        return cls(path, create=False)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- the controller -----------------------------------------------------------------------
    def load_states(self) -> dict[str, AlertState]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM alert_states").fetchall()
        states = {row["key"]: _state(row) for row in rows}
        self._saved = dict(states)
        return states

    def save(self, states: Mapping[str, AlertState], transitions: Sequence[AlertState], now: float) -> None:
        """Record an evaluation: the states (pending and firing; others are not kept) and the
        alerts that fired or resolved. Writes nothing when neither changed."""
        kept = {k: s for k, s in states.items() if s.phase in (Phase.PENDING, Phase.FIRING)}
        if kept == self._saved and not transitions:
            return
        with self._lock, self._conn:
            self._conn.execute("BEGIN")
            if kept != self._saved:
                self._conn.execute("DELETE FROM alert_states")
                self._conn.executemany(
                    "INSERT INTO alert_states(key, phase, labels, annotations, value, evaluated_at, active_since,"
                    " fired_at, resolved_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(s.key, s.phase.value, _json(s.labels), _json(s.annotations), s.value, s.evaluated_at,
                      s.active_since, s.fired_at, s.resolved_at) for s in kept.values()])
            for state in transitions:
                self._record_transition(state)
            if any(s.phase == Phase.RESOLVED for s in transitions):
                self._prune(now)
        self._saved = kept

    def _record_transition(self, state: AlertState) -> None:
        if state.phase == Phase.FIRING:
            self._conn.execute(
                "INSERT INTO alert_history(key, deployment, alertname, severity, labels, annotations, value, fired_at)"
                " VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                (state.key, state.deployment, state.alertname, state.severity, _json(state.labels),
                 _json(state.annotations), state.value, state.fired_at if state.fired_at is not None else 0.0))
        elif state.phase == Phase.RESOLVED:
            self._conn.execute(
                "UPDATE alert_history SET resolved_at = ?, value = ?, annotations = ?"
                " WHERE key = ? AND resolved_at IS NULL",
                (state.resolved_at, state.value, _json(state.annotations), state.key))

    def _prune(self, now: float) -> None:
        self._conn.execute("DELETE FROM alert_history WHERE resolved_at IS NOT NULL AND resolved_at < ?",
                           (now - self.keep_s,))
        self._conn.execute(
            "DELETE FROM alert_history WHERE resolved_at IS NOT NULL AND id NOT IN"
            " (SELECT id FROM alert_history ORDER BY fired_at DESC, id DESC LIMIT ?)", (self.keep_rows,))

    # --- readers (the CLI, the API) --------------------------------------------------------------
    def active(self, deployment: str | None = None) -> list[AlertState]:
        """Pending and firing alerts as last evaluated, firing first, then by deployment and name."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM alert_states").fetchall()
        states = [_state(row) for row in rows]
        if deployment is not None:
            states = [s for s in states if s.deployment == deployment]
        return sorted(states, key=lambda s: (s.phase != Phase.FIRING, s.deployment, s.alertname))

    def recent(self, limit: int = 50, deployment: str | None = None,
               resolved_only: bool = False) -> list[AlertRecord]:
        """Alerts that fired, newest first (those still firing included unless ``resolved_only``)."""
        where, args = [], []
        if deployment is not None:
            where.append("deployment = ?")
            args.append(deployment)
        if resolved_only:
            where.append("resolved_at IS NOT NULL")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._conn.execute(f"SELECT * FROM alert_history{clause} ORDER BY fired_at DESC, id DESC LIMIT ?",
                                      (*args, limit)).fetchall()
        return [_record(row) for row in rows]
