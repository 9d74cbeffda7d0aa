"""The thin loop around the pure evaluation: persist, record events, notify.

    engine = AlertEngine(AlertStore(state_dir / OBSERVABILITY_DB), notifier, controller.record)
    engine.tick(history, rules, now)      # each history step (every 5 s); never raises
    engine.close()

Events: ``record("alert", alertname, "firing" | "resolved", message, deployment)``, the
message being the alert's description (its value and threshold).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Protocol

from ..metrics.history import History
from .evaluate import AlertState, Evaluation, Phase, evaluate_all
from .rule import Rule
from .store import AlertStore

log = logging.getLogger(__name__)

RecordEvent = Callable[[str, str, str, str, str], None]
"""``Controller.record(kind, subject, type, message, deployment)``."""


class Notifications(Protocol):
    """What the engine needs of ``notify.Notifier`` (a test passes a fake)."""

    def notify(self, transitions: Sequence[AlertState], now: float) -> None: ...
    def refresh(self, firing: Sequence[AlertState], now: float) -> None: ...
    def close(self, timeout_s: float = 2.0) -> None: ...


class AlertEngine:
    def __init__(self, store: AlertStore | None, notifier: Notifications | None, record: RecordEvent | None = None,
                 resend_interval_s: float = 60.0) -> None:
        self.store = store
        self.notifier = notifier
        self._record = record
        self.resend_interval_s = resend_interval_s
        self.states: dict[str, AlertState] = {}
        self._last_refresh = -math.inf
        self._reported_errors: set[str] = set()
        if store is not None:
            try:
                self.states = store.load_states()
            except Exception:  # noqa: BLE001 - alerting starts afresh rather than not at all
                log.exception("could not load alert states from %s; starting without them", store.path)

    def tick(self, history: History, rules: Sequence[Rule], now: float) -> Evaluation:
        evaluation = evaluate_all(history, rules, self.states, now)
        self.states = evaluation.states
        self._log_errors(evaluation)
        self._guarded("saving alert states", lambda: self._save(evaluation, now))
        for state in evaluation.transitions:
            self._guarded(f"recording the event of {state.key}", lambda: self._event(state))  # noqa: B023 - runs now
        if self.notifier is not None:
            notifier = self.notifier
            self._guarded("queueing notifications", lambda: notifier.notify(evaluation.transitions, now))
            if now - self._last_refresh >= self.resend_interval_s:
                self._last_refresh = now
                firing = [s for s in evaluation.firing if s not in evaluation.transitions]
                self._guarded("refreshing firing alerts", lambda: notifier.refresh(firing, now))
        return evaluation

    def _save(self, evaluation: Evaluation, now: float) -> None:
        if self.store is not None:
            self.store.save(evaluation.states, evaluation.transitions, now)

    def _event(self, state: AlertState) -> None:
        if self._record is None:
            return
        kind = "firing" if state.phase == Phase.FIRING else "resolved"
        message = state.annotation_map.get("description") or state.annotation_map.get("summary", "")
        if kind == "resolved":
            message = f"resolved: {message}"
        self._record("alert", state.alertname, kind, message, state.deployment)

    def _log_errors(self, evaluation: Evaluation) -> None:
        for key, error in evaluation.errors.items():
            if key not in self._reported_errors:  # once per rule, not every 5 s
                log.warning("alert rule %s could not be evaluated: %s", key, error)
        self._reported_errors = set(evaluation.errors)

    @staticmethod
    def _guarded(what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:  # noqa: BLE001 - alerting must never stop the controller's tick
            log.exception("alerting: %s failed", what)

    def active(self) -> list[AlertState]:
        return sorted((s for s in self.states.values() if s.phase in (Phase.PENDING, Phase.FIRING)),
                      key=lambda s: (s.phase != Phase.FIRING, s.key))

    def close(self, timeout_s: float = 2.0) -> None:
        notifier = self.notifier
        if notifier is not None:
            self._guarded("closing the notifier", lambda: notifier.close(timeout_s))
        if self.store is not None:
            self._guarded("closing the alert store", self.store.close)
