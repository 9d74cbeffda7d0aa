"""What ``steady alerts``, ``steady slo`` and their API routes show, as JSON-ready dicts (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics.history import History
from .evaluate import AlertState
from .slo import budget, burn_rates
from .slospec import SloSpec
from .store import AlertRecord


def alert_json(state: AlertState) -> dict[str, Any]:
    annotations = state.annotation_map
    return {"key": state.key, "alertname": state.alertname, "deployment": state.deployment,
            "severity": state.severity, "state": state.phase.value, "value": state.value,
            "value_text": annotations.get("value", ""), "summary": annotations.get("summary", ""),
            "description": annotations.get("description", ""), "labels": state.label_map,
            "active_since": state.active_since, "fired_at": state.fired_at, "resolved_at": state.resolved_at}


def record_json(record: AlertRecord) -> dict[str, Any]:
    return {"key": record.key, "alertname": record.alertname, "deployment": record.deployment,
            "severity": record.severity, "state": "firing" if record.resolved_at is None else "resolved",
            "value": record.value, "value_text": record.annotations.get("value", ""),
            "summary": record.summary, "description": record.annotations.get("description", ""),
            "labels": record.labels, "fired_at": record.fired_at, "resolved_at": record.resolved_at}


def alerts_view(active: Sequence[AlertState], recent: Sequence[AlertRecord]) -> dict[str, Any]:
    """``active``: pending and firing now; ``recent``: those that fired, newest first."""
    return {"active": [alert_json(s) for s in active], "recent": [record_json(r) for r in recent]}


def slo_view(history: History, slos: Mapping[str, SloSpec], now: float) -> list[dict[str, Any]]:
    """Per deployment and objective: the SLI over the period, the budget spent, the burn rates."""
    rows = []
    for deployment in sorted(slos):
        slo = slos[deployment]
        rates = burn_rates(history, deployment, slo, now)
        for found in budget(history, deployment, slo, now):
            rows.append({
                "deployment": deployment, "sli": found.sli, "objective": found.objective,
                "period_s": found.period_s, "data_since": found.data_since, "calls": found.calls,
                "bad_calls": found.bad_calls, "sli_value": found.sli_value, "budget_consumed": found.consumed,
                "budget_remaining": found.remaining,
                "threshold_ms": slo.latency.threshold_ms if found.sli == "latency" and slo.latency else None,
                "burn_rates": [{"speed": r.speed, "factor": r.factor, "long_window_s": r.long_s,
                                "short_window_s": r.short_s, "long_burn": r.long_burn, "short_burn": r.short_burn,
                                "burning": r.burning} for r in rates[found.sli]],
            })
    return rows


def slo_of_spec_json(spec: Mapping[str, Any]) -> SloSpec | None:
    """The ``slo`` of a stored deployment spec (JSON), if it has one."""
    raw = spec.get("slo")
    return None if raw is None else SloSpec.model_validate(raw)

