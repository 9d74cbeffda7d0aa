"""Durations as the spec writes them and as Prometheus reads them."""

from __future__ import annotations

import pytest

from steadyserve.alerting.durations import format_duration, parse_duration_s


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("3d", 259200.0), ("1w", 604800.0), ("250ms", 0.25),
    ("1h0m5s", 3605.0), (90, 90.0), (0.5, 0.5), ("0s", 0.0), (" 2m ", 120.0),
])
def test_parse_accepts_prometheus_durations_and_seconds(text, seconds):
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad, says", [
    ("5 minutes", "not a duration"), ("m5", "not a duration"), ("5m1h", "largest first"), ("", "not a duration"),
    (-1, "zero or more"), (True, "duration like"), ("401d", "longer than"), (None, "duration like"),
])
def test_parse_rejects_other_text_with_a_hint(bad, says):
    with pytest.raises(ValueError, match=says):
        parse_duration_s(bad)


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (300, "5m"), (5400, "1h30m"), (259200, "3d"), (3.6, "3s600ms"), (0.03, "30ms"), (604800, "1w"),
])
def test_format_writes_prometheus_durations(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.001, 1.5, 59, 61, 3599.999, 86400 * 3 + 7])
def test_format_and_parse_round_trip(seconds):
    assert parse_duration_s(format_duration(seconds)) == pytest.approx(seconds)
