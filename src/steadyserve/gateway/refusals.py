"""Refused calls counted per key and window: bounded memory, exact counts (pure).

A gateway adds every call it refuses (401, 403, 429) to the open window under
its key (actor, source host, status, reason). Past ``max_keys`` distinct keys
in one window, further callers are counted under one overflow key per status:
memory stays bounded under a flood of distinct callers, and no refusal goes
uncounted. The gateway closes the window every few seconds; a closed window
gets the next sequence number and the value of the slot's shared refusal
counters (``made``), and is reported with the last ``max_windows`` others in
the probe answer. The controller records each window once (by ``seq``) and
uses ``made`` to account, as un-itemised rows, for refusals whose window it
never saw (a killed process, windows that fell off the end): see
``control.reports.refusal_rows``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

OVERFLOW_ACTOR = "*"
OVERFLOW_REASON = "callers beyond the per-window key limit"
STATUS_NAMES = ("401", "403", "429", "other")  # the slot's counters, one per refusal status


def status_name(status: int) -> str:
    name = str(status)
    return name if name in STATUS_NAMES else "other"


def source_host(peer: str) -> str:
    """'203.0.113.5:41234' -> '203.0.113.5' (IPv6 too): the port would make every connection a key."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


@dataclass(frozen=True)
class RefusalKey:
    actor: str  # the token's name, or "-" when there is no valid token
    source: str  # the caller's host, without port
    status: int
    reason: str


@dataclass
class _Tally:
    count: int
    ts: float  # wall time of the first refusal under this key in this window
    last_ts: float
    target: str  # the first refused path: a sample, not part of the key (callers choose paths)


class RefusalLog:
    def __init__(self, max_keys: int = 64, max_windows: int = 12) -> None:
        self.max_keys = max_keys
        self._open: dict[RefusalKey, _Tally] = {}
        self._opened_at: float | None = None  # monotonic time of the open window's first refusal
        self._seq = 0
        self._closed: deque[dict[str, Any]] = deque(maxlen=max_windows)

    def add(self, key: RefusalKey, target: str, ts: float, now: float) -> None:
        """One refusal, at wall time ``ts`` (recorded) and monotonic ``now`` (window age)."""
        if key not in self._open and len(self._open) >= self.max_keys:
            key = RefusalKey(OVERFLOW_ACTOR, OVERFLOW_ACTOR, key.status, OVERFLOW_REASON)
            target = OVERFLOW_ACTOR
        tally = self._open.get(key)
        if tally is None:
            self._open[key] = _Tally(1, ts, ts, target)
        else:
            tally.count += 1
            tally.last_ts = ts
        if self._opened_at is None:
            self._opened_at = now

    def due(self, now: float, window_s: float) -> bool:
        """Has the open window held refusals for ``window_s``?"""
        return self._opened_at is not None and now - self._opened_at >= window_s

    def close(self, made: dict[str, int]) -> dict[str, Any]:
        """Close the open window (even an empty one: it reports ``made``) and start the next."""
        self._seq += 1
        window = {
            "seq": self._seq, "made": dict(made),
            "rows": [{"actor": k.actor, "source": k.source, "status": k.status, "reason": k.reason,
                      "target": t.target, "count": t.count, "ts": t.ts, "last_ts": t.last_ts}
                     for k, t in self._open.items()],
        }
        self._closed.append(window)
        self._open = {}
        self._opened_at = None
        return window

    def report(self) -> list[dict[str, Any]]:
        """The closed windows still held, oldest first."""
        return list(self._closed)

    @property
    def open_count(self) -> int:
        return sum(t.count for t in self._open.values())
