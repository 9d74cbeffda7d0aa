"""The loop around the evaluation: events, notifications, the store, restarts."""

from __future__ import annotations

import pytest
from alert_helpers import calls, steady_history

from steadyserve.alerting.engine import AlertEngine
from steadyserve.alerting.evaluate import Phase
from steadyserve.alerting.rules import rules_for
from steadyserve.alerting.rulespec import AlertRuleSpec
from steadyserve.alerting.store import AlertStore

RULES = rules_for("d", [AlertRuleSpec.model_validate({"name": "SteadyHighErrorRatio", "for": 0})])
FAILING = steady_history(5.0, 120, calls(ok_per_step=50, bad_per_step=50))  # 50% errors up to 600 s
HEALTHY = steady_history(5.0, 120, calls(ok_per_step=100))


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []

    def notify(self, transitions, now):
        if transitions:
            self.sent.append(("notify", [f"{s.phase.value} {s.key}" for s in transitions]))

    def refresh(self, firing, now):
        self.sent.append(("refresh", [s.key for s in firing]))

    def close(self, timeout_s=2.0):
        self.sent.append(("close", []))


@pytest.fixture
def events():
    return []


def engine_with(tmp_path, events, notifier=None, resend_interval_s=60.0):
    return AlertEngine(AlertStore(tmp_path / "observability.db"), notifier or FakeNotifier(),
                       lambda *event: events.append(event), resend_interval_s)


def test_firing_and_resolving_are_events_and_notifications(tmp_path, events):
    notifier = FakeNotifier()
    engine = engine_with(tmp_path, events, notifier)
    engine.tick(FAILING, RULES, 600.0)
    engine.tick(HEALTHY, RULES, 605.0)
    assert [(e[0], e[1], e[2], e[4]) for e in events] == [("alert", "SteadyHighErrorRatio", "firing", "d"),
                                                          ("alert", "SteadyHighErrorRatio", "resolved", "d")]
    assert events[0][3] == "5xx ratio over 5m of d is 50% (alert at > 5%)"
    assert events[1][3].startswith("resolved: 5xx ratio over 5m of d is 50%")
    assert [n for n in notifier.sent if n[0] == "notify"] == [("notify", ["firing d/SteadyHighErrorRatio"]),
                                                              ("notify", ["resolved d/SteadyHighErrorRatio"])]


def test_a_restarted_engine_does_not_notify_a_firing_alert_again(tmp_path, events):
    first = engine_with(tmp_path, events)
    first.tick(FAILING, RULES, 600.0)
    first.close()
    events.clear()
    notifier = FakeNotifier()
    second = engine_with(tmp_path, events, notifier)
    assert [s.phase for s in second.active()] == [Phase.FIRING]
    second.tick(FAILING, RULES, 600.0)
    assert events == [] and [n for n in notifier.sent if n[0] == "notify"] == []


def test_firing_alerts_are_refreshed_once_per_resend_interval(tmp_path, events):
    notifier = FakeNotifier()
    engine = engine_with(tmp_path, events, notifier, resend_interval_s=60.0)
    for now in (540.0, 545.0, 550.0, 600.0):
        engine.tick(FAILING, RULES, now)
    refreshes = [(n[1]) for n in notifier.sent if n[0] == "refresh"]
    # At 540 s it had just fired (sent as a transition, not again); at 600 s, 60 s later, it is refreshed.
    assert refreshes == [[], ["d/SteadyHighErrorRatio"]]


def test_a_failing_store_does_not_stop_events_or_notifications(tmp_path, events):
    class BrokenStore(AlertStore):
        def save(self, *args, **kwargs):
            raise OSError("disk full")

    notifier = FakeNotifier()
    engine = AlertEngine(BrokenStore(tmp_path / "o.db"), notifier, lambda *e: events.append(e))
    engine.tick(FAILING, RULES, 600.0)
    assert len(events) == 1 and notifier.sent[0][0] == "notify"


def test_without_store_or_notifier_it_still_evaluates(events):
    engine = AlertEngine(None, None, lambda *e: events.append(e))
    evaluation = engine.tick(FAILING, RULES, 600.0)
    assert [s.key for s in evaluation.firing] == ["d/SteadyHighErrorRatio"] and len(events) == 1
