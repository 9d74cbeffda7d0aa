"""What the controller records from the stats a process reports in its probe answer (pure).

Gateways report ejections and refused calls, replicas handler timeouts; each
item carries a sequence number so that one is recorded once however often it
is reported (the controller keeps the last number seen per process).

Refused calls are audited exactly: a gateway reports them as windows of
aggregated rows (``gateway.refusals``), each window with the slot's cumulative
refusal counters (``made``, kept in a file that outlives the process). The
controller stores an ``AuditCursor`` per slot with the rows it writes (one
transaction); refusals that ``made`` shows but no recorded window itemises
(a killed process's last seconds, windows that fell off the report) become one
un-itemised row per status. So the audit's counts add up to the refusals made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Note:
    """An event to record."""

    kind: str
    subject: str
    type: str
    message: str
    deployment: str


@dataclass(frozen=True)
class RefusedCalls:
    """An audit row: ``count`` calls a gateway refused (401/403/429) from ``ts`` to ``last_ts``."""

    actor: str
    target: str
    source: str
    result: str
    ts: float
    count: int
    last_ts: float

    def row(self) -> dict[str, Any]:
        return {"ts": self.ts, "actor": self.actor, "action": "invoke", "target": self.target,
                "source": self.source, "result": self.result, "count": self.count, "last_ts": self.last_ts}


@dataclass(frozen=True)
class AuditCursor:
    """How far one gateway slot's refusals are recorded."""

    instance: str  # the gateway process
    seq: int  # its last window recorded
    made: dict[str, int]  # the slot's refusal counters as of that window

    def to_json(self) -> str:
        return json.dumps({"instance": self.instance, "seq": self.seq, "made": self.made}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> AuditCursor | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(str(data["instance"]), int(data["seq"]), {str(k): int(v) for k, v in data["made"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # unreadable: start afresh from the next window


def _new(items: list[dict[str, Any]], seen: int) -> tuple[list[dict[str, Any]], int]:
    fresh = [item for item in items if item["seq"] > seen]
    return fresh, max((item["seq"] for item in fresh), default=seen)


def ejections(gateway_id: str, stats: dict[str, Any], seen: int) -> tuple[list[Note], int]:
    fresh, seen = _new(stats.get("ejections", []), seen)
    return [Note("replica", e["replica"], "ejected",
                 f"ejected by gateway {gateway_id} for {e['period_s']:g}s"
                 f" (ejection #{e['times']} of generation {e['generation']}): {e['last_error']}",
                 e.get("service", "")) for e in fresh], seen


def handler_timeouts(replica_id: str, deployment: str, stats: dict[str, Any], seen: int) -> tuple[list[Note], int]:
    fresh, seen = _new(stats.get("handler_timeouts", []), seen)
    return [Note("replica", replica_id, "handler_timeout",
                 f"{t['message']} (request {t['request_id']}): answered 504", deployment) for t in fresh], seen


def refused_calls(gateway_id: str, stats: dict[str, Any], cursor: AuditCursor | None,
                  now_wall: float) -> tuple[list[RefusedCalls], AuditCursor | None]:
    """Audit rows for the refusals a gateway reports that are not yet recorded, and the new cursor.

    Without a cursor (a new state DB) the first window reported is the baseline: refusals
    before it are not charged to this database.
    """
    instance = str(stats.get("instance") or "")
    windows = sorted(stats.get("refusals") or [], key=lambda w: int(w["seq"]))
    after = cursor.seq if cursor is not None and cursor.instance == instance else 0
    fresh = [w for w in windows if int(w["seq"]) > after]
    if not instance or not fresh:
        return [], cursor
    made_before = cursor.made if cursor is not None else None
    rows: list[RefusedCalls] = []
    for window in fresh:
        made = {str(k): int(v) for k, v in window["made"].items()}
        itemised: dict[str, int] = {}
        for r in window["rows"]:
            name = _status_name(int(r["status"]), made)
            itemised[name] = itemised.get(name, 0) + int(r["count"])
        if made_before is not None:
            for name in sorted(made):
                # Counted by the slot, but in no window recorded: the rest of a killed process's
                # last window, or windows that fell off the report. A negative gap: counters reset.
                missing = made[name] - itemised.get(name, 0) - made_before.get(name, 0)
                if missing > 0:
                    rows.append(RefusedCalls(
                        "?", "?", "?", f"{name}: not itemised (gateway {gateway_id} restarted or was not"
                        " probed in time)", now_wall, missing, now_wall))
        rows += [RefusedCalls(r["actor"], r["target"], r["source"], f"{r['status']}: {r['reason']}",
                              float(r["ts"]), int(r["count"]), float(r["last_ts"])) for r in window["rows"]]
        made_before = made
    return rows, AuditCursor(instance, int(fresh[-1]["seq"]), made_before or {})


def _status_name(status: int, counters: dict[str, int]) -> str:
    """The counter a refusal status is counted under (gateway.refusals.status_name)."""
    return str(status) if str(status) in counters else "other"
