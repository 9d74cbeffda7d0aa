"""What the controller records from the stats a process reports in its probe answer (pure).

Gateways report ejections and refused calls, replicas handler timeouts; each
item carries a sequence number so that one is recorded once however often it
is reported (the controller keeps the last number seen per process).
"""

from __future__ import annotations

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
class RefusedCall:
    """An audit row: a call a gateway refused (401/403/429)."""

    actor: str
    target: str
    source: str
    result: str
    ts: float


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


def refused_calls(stats: dict[str, Any], seen: int) -> tuple[list[RefusedCall], int]:
    fresh, seen = _new(stats.get("auth_failures", []), seen)
    return [RefusedCall(f["actor"], f["target"], f["source"], f"{f['status']}: {f['reason']}", f["ts"])
            for f in fresh], seen
