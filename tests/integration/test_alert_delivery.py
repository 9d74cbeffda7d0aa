"""Notifications delivered over real HTTP to a real receiver on 127.0.0.1: retries with
backoff, order, isolation of a dead receiver, a caller that never waits, and the whole way
from a metrics history to a webhook."""

from __future__ import annotations

import time

import pytest
from alert_helpers import calls, receiver, steady_history
from conftest import free_port, wait_for

from steadyserve.alerting.engine import AlertEngine
from steadyserve.alerting.evaluate import AlertState, Phase
from steadyserve.alerting.notify import Notifier, RetryPolicy, Target
from steadyserve.alerting.rules import rules_for
from steadyserve.alerting.rulespec import AlertRuleSpec
from steadyserve.alerting.store import AlertStore

pytestmark = pytest.mark.integration


def alert(phase: Phase, name: str = "SteadyHighErrorRatio") -> AlertState:
    return AlertState(key=f"digits/{name}", phase=phase,
                      labels=(("alertname", name), ("deployment", "digits"), ("severity", "critical")),
                      annotations=(("summary", "digits: 5xx ratio over 5m > 5%"),), value=0.5, evaluated_at=100.0,
                      active_since=50.0, fired_at=60.0, resolved_at=100.0 if phase == Phase.RESOLVED else None)


def webhook_notifier(url: str, policy: RetryPolicy, outcomes: list | None = None, **kwargs) -> Notifier:
    return Notifier([Target("webhook", f"{url}/hook", name="oncall", timeout_s=2.0)], policy,
                    on_outcome=(outcomes.append if outcomes is not None else None), unit_random=lambda: 0.0,
                    **kwargs)


def test_a_failing_receiver_gets_retries_further_and_further_apart():
    outcomes: list = []
    with receiver(fail_first=3) as hook:
        notifier = webhook_notifier(hook.url, RetryPolicy(max_attempts=6, initial_s=0.2, max_s=5.0), outcomes)
        notifier.notify([alert(Phase.FIRING)], 100.0)
        wait_for(lambda: outcomes, 10, "the delivery's outcome")
        notifier.close()
    assert [o.delivered for o in outcomes] == [True] and outcomes[0].attempts == 4
    gaps = [b.at - a.at for a, b in zip(hook.attempts, hook.attempts[1:], strict=False)]
    # Equal jitter at its low end (unit_random 0): half of 0.2, 0.4, 0.8 s.
    assert all(gap >= minimum for gap, minimum in zip(gaps, [0.1, 0.2, 0.4], strict=True)), gaps
    assert gaps[0] < gaps[1] < gaps[2]
    (body,) = hook.bodies()
    assert body["status"] == "firing" and body["receiver"] == "oncall" and body["version"] == "4"
    assert body["alerts"][0]["labels"]["alertname"] == "SteadyHighErrorRatio"


def test_retry_after_is_respected():
    with receiver(fail_first=1, fail_status=429, retry_after="0.5") as hook:
        notifier = webhook_notifier(hook.url, RetryPolicy(max_attempts=3, initial_s=0.01, max_s=5.0))
        notifier.notify([alert(Phase.FIRING)], 100.0)
        wait_for(lambda: hook.delivered, 10, "the delivery")
        notifier.close()
    assert hook.attempts[1].at - hook.attempts[0].at >= 0.5


def test_resolved_arrives_after_firing_even_when_firing_needed_retries():
    with receiver(fail_first=2) as hook:
        notifier = webhook_notifier(hook.url, RetryPolicy(max_attempts=5, initial_s=0.05, max_s=1.0))
        notifier.notify([alert(Phase.FIRING)], 100.0)
        notifier.notify([alert(Phase.RESOLVED)], 130.0)
        wait_for(lambda: len(hook.delivered) == 2, 10, "both notifications")
        notifier.close()
    assert [b["status"] for b in hook.bodies()] == ["firing", "resolved"]
    assert hook.bodies()[1]["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"


def test_a_dead_receiver_does_not_delay_a_live_one():
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with receiver() as hook:
        notifier = Notifier([Target("webhook", f"{dead}/hook", timeout_s=1.0), Target("webhook", f"{hook.url}/hook")],
                            RetryPolicy(max_attempts=10, initial_s=2.0, max_s=2.0))
        started = time.monotonic()
        notifier.notify([alert(Phase.FIRING)], 100.0)
        wait_for(lambda: hook.delivered, 10, "the live receiver's notification")
        assert hook.delivered[0].at - started < 1.5  # not behind the dead one's retries
        notifier.close(timeout_s=0.1)


def test_a_slow_receiver_never_makes_the_caller_wait():
    with receiver(delay_s=0.5) as hook:
        notifier = Notifier([Target("webhook", f"{hook.url}/hook")], queue_size=2)
        started = time.monotonic()
        for _ in range(200):
            notifier.notify([alert(Phase.FIRING)], 100.0)
        assert time.monotonic() - started < 0.5
        assert notifier.dropped >= 195
        notifier.close(timeout_s=0.1)


def test_from_history_to_webhook_firing_then_resolved(tmp_path):
    """The engine over a real history, store and notifier: a real receiver gets both."""
    rules = rules_for("digits", [AlertRuleSpec.model_validate({"name": "SteadyHighErrorRatio", "for": "10s"})])
    failing = steady_history(5.0, 120, calls("digits", ok_per_step=50, bad_per_step=50))
    healthy = steady_history(5.0, 120, calls("digits", ok_per_step=100))
    events: list = []
    with receiver() as hook:
        notifier = Notifier([Target("webhook", f"{hook.url}/hook", name="oncall")])
        engine = AlertEngine(AlertStore(tmp_path / "observability.db"), notifier, lambda *e: events.append(e))
        for now in (590.0, 595.0, 600.0):  # pending at 590, firing once it held 10 s
            engine.tick(failing, rules, now)
        engine.tick(healthy, rules, 605.0)
        wait_for(lambda: len(hook.delivered) == 2, 10, "firing and resolved")
        engine.close()
    firing, resolved = hook.bodies()
    assert (firing["status"], resolved["status"]) == ("firing", "resolved")
    assert firing["commonLabels"] == {"alertname": "SteadyHighErrorRatio", "deployment": "digits",
                                      "severity": "critical"}
    assert firing["commonAnnotations"]["value"] == "50%"
    assert [e[2] for e in events] == ["firing", "resolved"]
    store = AlertStore(tmp_path / "observability.db")
    assert [(r.alertname, r.fired_at, r.resolved_at) for r in store.recent()] == [
        ("SteadyHighErrorRatio", 600.0, 605.0)]
    store.close()
