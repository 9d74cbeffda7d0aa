"""``season_s: auto``: the period is found from the recorded rate, then the forecaster takes over."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steadyserve.autoscaling.autoscaler import Autoscaler
from steadyserve.autoscaling.seasons import AUTO_BUCKET_S, SEARCH_EVERY_BUCKETS, detect_season
from steadyserve.autoscaling.settings import AutoscalingSettings


def daily_like(period_s: float, days: float, noise: float, seed: int = 3) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * period_s, AUTO_BUCKET_S)
    phase = (t % period_s) / period_s
    shape = np.exp(-((phase - 0.35) / 0.08) ** 2) * 0.7 + np.exp(-((phase - 0.75) / 0.1) ** 2)
    return list(np.maximum(0, (10 + 90 * shape) * (1 + noise * rng.standard_normal(len(t)))))


@pytest.mark.parametrize("period_s", [600.0, 1250.0, 3600.0, 86400.0])
def test_a_clear_period_is_found_within_a_bucket(period_s):
    found = detect_season(daily_like(period_s, days=3, noise=0.1), AUTO_BUCKET_S)
    assert found is not None and abs(found - period_s) <= AUTO_BUCKET_S  # whole hours snap to the hour


def test_two_peaks_a_day_give_the_day_not_the_half_day():
    assert detect_season(daily_like(3600.0, days=4, noise=0.05), AUTO_BUCKET_S) == pytest.approx(3600.0, abs=10)


@pytest.mark.parametrize("rates", [
    [5.0] * 2000,  # flat
    list(np.random.default_rng(1).exponential(10, 2000)),  # noise
    daily_like(3600.0, days=1.5, noise=0.1),  # less than two periods recorded
])
def test_no_period_without_a_repeating_pattern_or_two_periods_of_it(rates):
    assert detect_season(rates, AUTO_BUCKET_S) is None


def test_unknown_buckets_do_not_hide_the_period():
    rates = daily_like(3600.0, days=3, noise=0.1)
    for i in range(400, 460):
        rates[i] = math.nan
    assert detect_season(rates, AUTO_BUCKET_S) == pytest.approx(3600.0, abs=10)


def test_the_autoscaler_forecasts_once_it_has_found_the_season():
    settings = AutoscalingSettings(metric="rps", target=5, predictive={"enabled": True, "season_s": "auto"})
    scaler = Autoscaler(settings, start=0.0)
    rates = daily_like(1200.0, days=8, noise=0.05)  # 960 buckets: searched at 360 and 720
    for i, rate in enumerate(rates):
        scaler.observe(i * AUTO_BUCKET_S, rate, rate, rate * AUTO_BUCKET_S)
    assert scaler.finder is not None and scaler.finder.season_s == pytest.approx(1200.0, abs=10)
    assert len(rates) >= SEARCH_EVERY_BUCKETS
    assert scaler.forecaster is not None and scaler.forecaster.season_s == scaler.finder.season_s
    assert scaler.forecaster.seasons_seen >= 2  # it starts from what the finder recorded
