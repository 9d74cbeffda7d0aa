"""Failure prediction from a replica's readings (pure)."""

from __future__ import annotations

import pytest

from steadyserve.control.prediction import (
    MIB,
    Reading,
    Settings,
    assess,
    error_forecast,
    latency_forecast,
    memory_forecast,
    theil_sen_slope,
)

SETTINGS = Settings(window_s=60, horizon_s=300, latency_drift=3.0, error_ratio=0.5)


def _memory(mib_per_s: float, start_mib: float = 100, seconds: int = 60, spike_at: int | None = None) -> list[Reading]:
    readings = []
    for t in range(seconds + 1):
        rss = (start_mib + mib_per_s * t + (200 if t == spike_at else 0)) * MIB
        readings.append(Reading(float(t), rss, 0, 0, 0))
    return readings


def test_theil_sen_ignores_a_single_spike():
    points = [(float(t), 2.0 * t + (1000 if t == 5 else 0)) for t in range(20)]
    assert theil_sen_slope(points) == pytest.approx(2.0)


@pytest.mark.parametrize(("mib_per_s", "limit_mib", "eta_s"), [
    (1.0, 260, 100),  # 160 MiB now, 100 MiB to go at 1 MiB/s
    (0.5, 275, 290),  # 130 MiB now: just within the horizon
])
def test_a_memory_trend_reaching_the_limit_within_the_horizon_is_forecast(mib_per_s, limit_mib, eta_s):
    found = memory_forecast(_memory(mib_per_s), limit_mib * MIB, SETTINGS, now=60)
    assert found is not None and found.eta_s == pytest.approx(eta_s, abs=1)
    assert f"reaches the limit of {limit_mib} MiB" in found.message


@pytest.mark.parametrize(("readings", "limit_mib"), [
    (_memory(0.3, seconds=60), 260),  # reaches it in ~330 s: past the horizon
    (_memory(0.0, seconds=60, spike_at=59), 260),  # flat with one spike
    (_memory(-1.0, start_mib=200), 260),  # shrinking
    (_memory(5.0, seconds=10), 260),  # too little history for a trend
])
def test_no_memory_forecast_without_a_trend_that_gets_there_in_time(readings, limit_mib):
    assert memory_forecast(readings, limit_mib * MIB, SETTINGS, now=readings[-1].ts) is None


def _calls(per_s: int, ms_before: float, ms_after: float, errors_after: float = 0.0) -> list[Reading]:
    readings, calls, errors, handler_s = [], 0.0, 0.0, 0.0
    for t in range(181):
        slow = t > 120
        readings.append(Reading(float(t), 100 * MIB, calls, errors, handler_s))
        calls += per_s
        errors += per_s * errors_after if slow else 0
        handler_s += per_s * (ms_after if slow else ms_before) / 1000
    return readings


def test_a_replica_slower_than_its_first_calls_is_reported():
    found = latency_forecast(_calls(10, 5, 20), SETTINGS, now=180)
    assert found is not None and found.message.startswith("handler time drifted from 5.0 ms to 19.7 ms")


@pytest.mark.parametrize("readings", [_calls(10, 5, 10), _calls(0, 5, 50)])
def test_no_latency_warning_for_a_small_drift_or_without_calls(readings):
    assert latency_forecast(readings, SETTINGS, now=180) is None


def test_a_replica_failing_most_calls_is_reported_and_one_failing_few_is_not():
    assert error_forecast(_calls(10, 5, 5, errors_after=0.9), SETTINGS, now=180) is not None
    assert error_forecast(_calls(10, 5, 5, errors_after=0.1), SETTINGS, now=180) is None


def test_no_memory_forecast_without_a_limit():
    assert [f.kind for f in assess(_memory(5.0), None, SETTINGS, now=60)] == []
    assert [f.kind for f in assess(_memory(5.0), 500 * MIB, SETTINGS, now=60)] == ["memory"]
