"""Alertmanager's JSON: the webhook notification, and the body of POST /api/v2/alerts."""

from __future__ import annotations

import pytest

from steadyserve.alerting.evaluate import AlertState, Phase
from steadyserve.alerting.webhook import (
    ZERO_TIME,
    alertmanager_alerts,
    fingerprint,
    rfc3339,
    webhook_payload,
)

LABELS = (("alertname", "SteadyHighErrorRatio"), ("deployment", "digits"), ("severity", "critical"))
ANNOTATIONS = (("description", "5xx ratio over 5m of digits is 12.5% (alert at > 5% for 2m)"),
               ("summary", "digits: 5xx ratio over 5m > 5%"), ("value", "12.5%"))


def state(phase: Phase, resolved_at: float | None = None, labels=LABELS) -> AlertState:
    return AlertState(key="digits/SteadyHighErrorRatio", phase=phase, labels=labels, annotations=ANNOTATIONS,
                      value=0.125, evaluated_at=1_700_000_130.0, active_since=1_700_000_000.0,
                      fired_at=1_700_000_120.0, resolved_at=resolved_at)


@pytest.mark.parametrize("labels, expected", [
    ({}, "cbf29ce484222325"),  # prometheus/common's test vectors
    ({"name": "garland, briggs", "fear": "love is not enough"}, "507a62d79ee76c9a"),
])
def test_fingerprint_is_alertmanagers(labels, expected):
    assert fingerprint(labels) == expected


@pytest.mark.parametrize("ts, text", [(None, ZERO_TIME), (0.0, "1970-01-01T00:00:00.000Z"),
                                      (1_700_000_120.25, "2023-11-14T22:15:20.250Z")])
def test_times_are_rfc3339_utc(ts, text):
    assert rfc3339(ts) == text


def test_a_firing_webhook_notification_has_alertmanagers_shape():
    payload = webhook_payload([state(Phase.FIRING)], receiver="oncall", external_url="https://steady.example:8081")
    assert payload == {
        "version": "4",
        "groupKey": '{}:{alertname="SteadyHighErrorRatio", deployment="digits"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "oncall",
        "groupLabels": {"alertname": "SteadyHighErrorRatio", "deployment": "digits"},
        "commonLabels": dict(LABELS),
        "commonAnnotations": dict(ANNOTATIONS),
        "externalURL": "https://steady.example:8081",
        "alerts": [{
            "status": "firing",
            "labels": dict(LABELS),
            "annotations": dict(ANNOTATIONS),
            "startsAt": "2023-11-14T22:15:20.000Z",
            "endsAt": ZERO_TIME,
            "generatorURL": "https://steady.example:8081/v1/alerts?deployment=digits",
            "fingerprint": fingerprint(dict(LABELS)),
        }],
    }


def test_a_resolved_notification_ends_when_it_resolved():
    payload = webhook_payload([state(Phase.RESOLVED, resolved_at=1_700_000_180.0)], receiver="oncall")
    assert payload["status"] == "resolved"
    assert payload["alerts"][0]["status"] == "resolved"
    assert payload["alerts"][0]["endsAt"] == "2023-11-14T22:16:20.000Z"
    assert payload["alerts"][0]["generatorURL"] == "" and payload["externalURL"] == ""


def test_common_labels_are_those_every_alert_shares():
    other = (("alertname", "SteadyHighErrorRatio"), ("deployment", "echo"), ("severity", "critical"))
    payload = webhook_payload([state(Phase.FIRING), state(Phase.RESOLVED, 1.0, labels=other)], receiver="r")
    assert payload["commonLabels"] == {"alertname": "SteadyHighErrorRatio", "severity": "critical"}
    assert payload["groupLabels"] == {"alertname": "SteadyHighErrorRatio"}
    assert payload["status"] == "firing"


def test_alertmanager_api_body_keeps_firing_alerts_valid_for_a_while():
    (firing,) = alertmanager_alerts([state(Phase.FIRING)], now=1_700_000_130.0, valid_for_s=240.0)
    assert firing == {"labels": dict(LABELS), "annotations": dict(ANNOTATIONS),
                      "startsAt": "2023-11-14T22:15:20.000Z", "endsAt": "2023-11-14T22:19:30.000Z"}


def test_alertmanager_api_body_of_a_resolved_alert_ends_at_its_resolution():
    (resolved,) = alertmanager_alerts([state(Phase.RESOLVED, resolved_at=1_700_000_180.0)], now=1_700_000_200.0,
                                      valid_for_s=240.0, external_url="http://steady:8081/")
    assert resolved["endsAt"] == "2023-11-14T22:16:20.000Z"
    assert resolved["generatorURL"] == "http://steady:8081/v1/alerts?deployment=digits"
