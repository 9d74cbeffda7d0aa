"""Refused control-API calls, counted as the gateway counts its own.

Alike refusals (actor, action, target, caller's host, result) within
``REFUSAL_WINDOW_S`` become one audit row with an exact ``count``, written when the
window ends and when the API stops: a flood of 401s costs a few rows, not one each.
``RefusalWindow`` is the pure part; ``RefusalAudit`` the task that writes it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from .statedb import StateDB

log = logging.getLogger(__name__)

REFUSAL_WINDOW_S = 5.0
REFUSAL_MAX_KEYS = 256  # distinct rows per window; callers beyond it share one row per action and result
OVERFLOW = "*"


@dataclass(frozen=True)
class RefusalKey:
    """Refused calls with the same key in one window are one audit row."""

    actor: str  # the token's name, or "-" without a valid token
    action: str
    target: str  # method and path, sanitised and capped: long paths alike at the start are one key
    source: str  # the caller's host: ports vary per connection
    result: str  # "401: <reason>"


@dataclass
class _Tally:
    count: int
    ts: float  # wall time of the first refusal under the key in this window
    last_ts: float


class RefusalWindow:
    """Refused calls counted per key over one window (pure): bounded memory, exact counts."""

    def __init__(self, max_keys: int = REFUSAL_MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._open: dict[RefusalKey, _Tally] = {}
        self._opened_at: float | None = None  # monotonic time of the open window's first refusal

    def add(self, key: RefusalKey, ts: float, now: float) -> None:
        """One refusal at wall time ``ts`` (recorded) and monotonic ``now`` (window age)."""
        if key not in self._open and len(self._open) >= self.max_keys:
            key = RefusalKey(OVERFLOW, key.action, f"{OVERFLOW} (callers beyond {self.max_keys} distinct rows)",
                             OVERFLOW, key.result)
        tally = self._open.get(key)
        if tally is None:
            self._open[key] = _Tally(1, ts, ts)
        else:
            tally.count += 1
            tally.last_ts = ts
        if self._opened_at is None:
            self._opened_at = now

    def wait_s(self, now: float, window_s: float) -> float | None:
        """How long until the open window ends (0: it has); None when no refusal is open."""
        return None if self._opened_at is None else max(0.0, self._opened_at + window_s - now)

    def take(self) -> list[dict[str, Any]]:
        """The open window's rows (as ``StateDB.add_audit_rows`` takes them); the next starts empty."""
        rows = [{"ts": t.ts, "actor": k.actor, "action": k.action, "target": k.target, "source": k.source,
                 "result": k.result, "count": t.count, "last_ts": t.last_ts} for k, t in self._open.items()]
        self._open, self._opened_at = {}, None
        return rows


class RefusalAudit:
    """The thin loop around ``RefusalWindow``: a task writes the window when it ends, and whatever
    is open when the task is cancelled (the event loop shutting down, before the DB closes)."""

    def __init__(self, db: StateDB, window_s: float = REFUSAL_WINDOW_S) -> None:
        self.db, self.window_s = db, window_s
        self.window = RefusalWindow()
        self._writer: asyncio.Task[None] | None = None

    def add(self, key: RefusalKey) -> None:
        self.window.add(key, time.time(), time.monotonic())
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_when_due())

    async def _write_when_due(self) -> None:
        try:
            while (wait_s := self.window.wait_s(time.monotonic(), self.window_s)) is not None:
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                else:
                    self.flush()
        finally:
            self.flush()

    def flush(self) -> None:
        """Write the open window now (a failed write is logged: its rows are lost)."""
        rows = self.window.take()
        try:
            self.db.add_audit_rows(rows)
        except sqlite3.Error as exc:
            log.warning("cannot write %d refused-call rows to the audit log: %s", len(rows), exc)
