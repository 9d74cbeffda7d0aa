"""What the controller does with what it measures: history steps, alerts, forecasts.

A mixin of ``Controller`` (as ``DesiredState`` is): after each supervision tick the observer
measures (control/observing.py); on each new history step the alert engine evaluates the
rules (alerting/); forecasts become ``predicted`` events and, where a deployment asks for it,
proactive replacements (the supervisor then starts a successor and drains the replica).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..alerting.engine import AlertEngine
from ..alerting.notify import DeliveryOutcome, Notifier
from ..alerting.rule import Rule
from ..alerting.rules import rules_for
from ..alerting.store import AlertStore
from ..metrics.store import OBSERVABILITY_DB
from . import prediction
from .config import PlatformConfig
from .desired import DeploymentState
from .observing import Observer, ReplicaView
from .spec import PredictionSettings
from .statedb import StateDB
from .supervision import HAS_PROCESS, ProcState

if TYPE_CHECKING:
    from .controller import Key, Managed


EVENTS_KEPT = 200_000  # the newest events stay (months of a busy instance); older ones go
PRUNE_EVENTS_EVERY_S = 600.0


class Watching:
    _events_pruned_at: float = 0.0
    db: StateDB
    config: PlatformConfig
    deployments: dict[str, DeploymentState]
    managed: dict[Key, Managed]
    observer: Observer | None
    alerts: AlertEngine | None
    record: Callable[..., None]
    _guarded: Callable[..., None]

    def start_alerting(self) -> None:
        """Alert evaluation on the history; notifications delivered off the loop (threads) when configured."""
        assert self.observer is not None
        settings = self.config.notifications
        loop = asyncio.get_running_loop()
        engine = self.alert_engine()
        if settings.enabled and engine.notifier is None:
            def on_outcome(outcome: DeliveryOutcome) -> None:  # on a notifier thread: the loop records it
                loop.call_soon_threadsafe(self._notified, outcome)

            engine.notifier = Notifier.from_settings(settings, on_outcome=on_outcome)

    def alert_engine(self) -> AlertEngine:
        """The alert engine (its store is what the API lists); notifications start with the loop."""
        if self.alerts is None:
            self.alerts = AlertEngine(AlertStore(self.config.state_dir / OBSERVABILITY_DB), None, self.record,
                                      self.config.notifications.resend_interval_s)
        return self.alerts

    def _notified(self, outcome: DeliveryOutcome) -> None:
        if not outcome.delivered:
            self._guarded("alert", "notification", outcome.deployment, "report a notification", lambda: self.record(
                "alert", "notification", "dropped" if outcome.dropped else "undelivered", outcome.describe(),
                outcome.deployment))

    def alert_rules(self) -> list[Rule]:
        return [rule for name, dep in self.deployments.items() if not dep.deleting
                for rule in rules_for(name, dep.config.spec.alerts, dep.config.spec.slo)]

    def _measure(self, tick_s: float) -> None:
        """Metrics and history after a tick; forecasts become events, and replacements where configured."""
        assert self.observer is not None
        forecasts = self.observer.after_tick(self.replica_views(), tick_s)
        stepped_at = self.observer.stepped_at
        if self.alerts is not None and stepped_at is not None:  # a new history step: evaluate
            self.alerts.tick(self.observer.history, self.alert_rules(), stepped_at)
        if stepped_at is not None and stepped_at - self._events_pruned_at >= PRUNE_EVENTS_EVERY_S:
            self._events_pruned_at = stepped_at
            self.db.prune_events(EVENTS_KEPT)
        for found in forecasts:
            managed = self.managed.get(("replica", found.deployment, found.replica))
            if managed is None or managed.proc is None or managed.proc.pid != found.pid or managed.config is None:
                continue
            replace_it = (found.forecast.kind == "memory" and managed.config.spec.prediction.replace
                          and managed.slot.state == ProcState.READY and managed.slot.replace_reason is None)
            self.record("replica", found.replica, "predicted",
                        found.forecast.message + ("; replacing it before it does" if replace_it else ""),
                        found.deployment)
            if replace_it:
                managed.forecast = f"predicted to fail: {found.forecast.message}"

    def replica_views(self) -> list[ReplicaView]:
        views = []
        for (kind, name, id_), m in self.managed.items():
            if kind != "replica":
                continue
            running = m.proc is not None and m.slot.state in HAS_PROCESS and m.proc.poll() is None
            spec = m.config.spec if m.config is not None else None
            stats = m.stats
            views.append(ReplicaView(
                name, id_, m.slot.state.value, m.proc.pid if running and m.proc else None, m.slot.restarts,
                spec.resources.memory_mb if spec is not None else None,
                calls=_number(stats.get("requests")), errors=_number(stats.get("errors")),
                handler_s=_number(stats.get("handler_seconds")),
                prediction=_prediction_settings(spec.prediction) if spec is not None else prediction.Settings()))
        return views


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _prediction_settings(spec: PredictionSettings) -> prediction.Settings:
    return prediction.Settings(window_s=spec.window_s, horizon_s=spec.horizon_s, latency_drift=spec.latency_drift,
                               error_ratio=spec.error_ratio)
