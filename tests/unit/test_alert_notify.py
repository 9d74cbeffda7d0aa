"""Notifications: retry decisions (pure), and a notifier that never makes its caller wait."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from conftest import wait_for

from steadyserve.alerting.evaluate import AlertState, Phase
from steadyserve.alerting.notify import (
    DeliveryOutcome,
    Notifier,
    RetryPolicy,
    Target,
    backoff_s,
    judge,
    redact_url,
    retry_after_s,
)
from steadyserve.alerting.notifyspec import NotificationSettings

POLICY = RetryPolicy(max_attempts=5, initial_s=1.0, max_s=10.0)


@pytest.mark.parametrize("failed, unit_random, hint, expected", [
    (1, 0.0, None, 0.5), (1, 1.0, None, 1.0), (2, 0.0, None, 1.0), (3, 0.5, None, 3.0),
    (5, 1.0, None, 10.0),  # 16 s capped at 10
    (1, 0.0, 4.0, 4.0),  # the receiver's Retry-After, when longer
    (1, 0.0, 60.0, 10.0),  # ... but never past the cap
])
def test_backoff_grows_exponentially_with_jitter_within_the_cap(failed, unit_random, hint, expected):
    assert backoff_s(failed, POLICY, unit_random, hint) == pytest.approx(expected)


@pytest.mark.parametrize("status, verdict", [
    (200, "delivered"), (204, "delivered"), (None, "retry"), (500, "retry"), (503, "retry"), (429, "retry"),
    (408, "retry"), (400, "give_up"), (401, "give_up"), (404, "give_up"), (301, "give_up"),
])
def test_judge(status, verdict):
    assert judge(status) == verdict


@pytest.mark.parametrize("header, seconds", [("3", 3.0), (" 1.5 ", 1.5), ("-1", None), (None, None),
                                             ("Wed, 21 Oct 2015 07:28:00 GMT", None)])
def test_retry_after(header, seconds):
    assert retry_after_s(header) == seconds


@pytest.mark.parametrize("url, shown", [
    ("https://user:pass@hooks.example:8443/a/b?token=s3cret#x", "https://hooks.example:8443/a/b"),
    ("http://127.0.0.1:9093/api/v2/alerts", "http://127.0.0.1:9093/api/v2/alerts"),
    ("http://[::1]:80/h", "http://[::1]:80/h"),
])
def test_urls_are_reported_without_credentials(url, shown):
    assert redact_url(url) == shown


def alert(phase: Phase = Phase.FIRING, name: str = "A") -> AlertState:
    return AlertState(key=f"d/{name}", phase=phase, labels=(("alertname", name), ("deployment", "d")),
                      annotations=(("summary", "s"),), value=1.0, evaluated_at=10.0, active_since=0.0, fired_at=5.0,
                      resolved_at=10.0 if phase == Phase.RESOLVED else None)


class Outcomes:
    def __init__(self) -> None:
        self.items: list[DeliveryOutcome] = []
        self.lock = threading.Lock()

    def __call__(self, outcome: DeliveryOutcome) -> None:
        with self.lock:
            self.items.append(outcome)

    def done(self) -> list[DeliveryOutcome]:
        with self.lock:
            return [o for o in self.items if not o.dropped]

    def dropped(self) -> list[DeliveryOutcome]:
        with self.lock:
            return [o for o in self.items if o.dropped]


def test_a_full_queue_drops_the_oldest_and_never_blocks():
    release = threading.Event()
    outcomes = Outcomes()

    def stuck(request: httpx.Request) -> httpx.Response:
        release.wait(10)
        return httpx.Response(200)

    notifier = Notifier([Target("webhook", "http://hooks.invalid/a")], queue_size=3, on_outcome=outcomes,
                        transport=httpx.MockTransport(stuck))
    try:
        started = time.monotonic()
        for i in range(20):
            notifier.notify([alert(name=f"A{i}")], 10.0)
        assert time.monotonic() - started < 1.0  # the worker is stuck on the first; nobody waited for it
        wait_for(lambda: len(outcomes.dropped()) >= 16, 5, "drops reported")
        assert notifier.dropped == len(outcomes.dropped())
        assert all(o.error == "dropped: the queue was full" for o in outcomes.dropped())
    finally:
        release.set()
        notifier.close(timeout_s=5)
    delivered = [o.about for o in outcomes.done() if o.delivered]
    assert delivered[-3:] == ["firing d/A17", "firing d/A18", "firing d/A19"]  # the newest were kept


def test_a_rejected_payload_is_not_retried():
    outcomes = Outcomes()
    seen = []

    def reject(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, text="bad alert")

    notifier = Notifier([Target("webhook", "http://hooks.invalid/a")], on_outcome=outcomes,
                        transport=httpx.MockTransport(reject))
    notifier.notify([alert()], 10.0)
    wait_for(outcomes.done, 5, "an outcome")
    notifier.close()
    (outcome,) = outcomes.done()
    assert (outcome.delivered, outcome.attempts, outcome.status, len(seen)) == (False, 1, 400, 1)
    assert (outcome.keys, outcome.deployment) == (("d/A",), "d")
    assert "not delivered to http://hooks.invalid/a after 1 attempt(s): HTTP 400" in outcome.describe()


def test_transport_failures_are_retried_until_max_attempts():
    outcomes = Outcomes()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    notifier = Notifier([Target("webhook", "http://hooks.invalid/a")], RetryPolicy(3, 0.001, 0.002),
                        on_outcome=outcomes, transport=httpx.MockTransport(refuse))
    notifier.notify([alert()], 10.0)
    wait_for(outcomes.done, 5, "an outcome")
    notifier.close()
    (outcome,) = outcomes.done()
    assert (outcome.delivered, outcome.attempts, outcome.error) == (False, 3, "ConnectError: connection refused")


def test_send_resolved_false_skips_resolved_notifications():
    bodies = []

    def keep(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return httpx.Response(200)

    notifier = Notifier([Target("webhook", "http://hooks.invalid/a", send_resolved=False)],
                        transport=httpx.MockTransport(keep))
    notifier.notify([alert(Phase.FIRING), alert(Phase.RESOLVED, name="B")], 10.0)
    wait_for(notifier.idle, 5, "deliveries")
    notifier.close()
    assert len(bodies) == 1 and b'"status":"firing"' in bodies[0]


def test_alertmanager_gets_one_list_and_refreshes_of_firing_alerts():
    requests: list[httpx.Request] = []

    def keep(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200)

    settings = NotificationSettings.model_validate({"alertmanager_url": "http://am.invalid:9093/"})
    notifier = Notifier.from_settings(settings, transport=httpx.MockTransport(keep))
    assert [t.url for t in notifier.targets] == ["http://am.invalid:9093/api/v2/alerts"]
    notifier.notify([alert(name="A"), alert(Phase.RESOLVED, name="B")], 10.0)
    notifier.refresh([alert(name="A")], 70.0)
    notifier.refresh([], 130.0)  # nothing firing: nothing sent
    wait_for(notifier.idle, 5, "deliveries")
    notifier.close()
    assert [len(json.loads(r.read())) for r in requests] == [2, 1]
    assert all(r.headers["content-type"] == "application/json" for r in requests)


def test_close_gives_up_on_what_is_left_and_says_so():
    outcomes = Outcomes()

    def slow_failure(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    notifier = Notifier([Target("webhook", "http://hooks.invalid/a", timeout_s=1.0)], RetryPolicy(100, 5.0, 5.0),
                        on_outcome=outcomes, transport=httpx.MockTransport(slow_failure))
    notifier.notify([alert(name="A"), alert(name="B")], 10.0)
    wait_for(lambda: notifier.pending() == 2 and not outcomes.items, 5, "A waiting to retry")
    started = time.monotonic()
    notifier.close(timeout_s=0.2)
    assert time.monotonic() - started < 3.0
    about = {o.about: o for o in outcomes.items}
    assert "given up: the notifier closed" in (about["firing d/A"].error or "")
    assert about["firing d/B"].dropped
    notifier.notify([alert(name="C")], 20.0)  # after close: ignored, no error
