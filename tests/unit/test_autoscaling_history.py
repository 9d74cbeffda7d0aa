"""The call-rate history survives a controller restart: stored buckets line up with new ones."""

from __future__ import annotations

import math

from steadyserve.autoscaling.autoscaler import Autoscaler
from steadyserve.autoscaling.forecast import RateForecaster, RateSeries
from steadyserve.autoscaling.rate_store import RateStore
from steadyserve.autoscaling.settings import AutoscalingSettings, PredictiveSettings

SEASON = PredictiveSettings(enabled=True, season_s=60.0)


def wave(t: float) -> float:
    return 10 + 8 * math.sin(2 * math.pi * t / 60)


def test_stored_buckets_come_back_in_order_with_unknown_gaps():
    series = RateSeries(1.0, 1000, start=105.5, history=[(100.0, 1.0), (101.0, 2.0), (103.0, 4.0), (105.0, 9.0)])
    # Buckets 100..104; 102 and 104 were not stored (unknown); the open bucket (105) is counted anew.
    shown = ["?" if math.isnan(v) else v for v in series.values()]
    assert shown == [1.0, 2.0, "?", 4.0, "?"]
    assert series.start_of(series.open) == 105.0


def test_a_forecaster_with_its_stored_history_forecasts_at_once(tmp_path):
    first = RateForecaster(SEASON, start=1000.0)
    for t in range(1000, 1130):
        first.count(t, wave(t))
    store = RateStore(tmp_path / "observability.db")
    store.write("d", first.bucket_s, first.take_unsaved())

    restarted = RateForecaster(SEASON, start=1131.0, history=store.load("d", first.bucket_s, 0.0))
    assert restarted.seasons_seen >= 2
    job = restarted.refit_job()
    assert job is not None
    restarted.install(job())
    assert restarted.model is not None


def test_the_autoscaler_asks_for_its_history_in_wall_clock_time(tmp_path):
    asked: list[tuple[float, float]] = []

    def load(bucket_s: float, since: float) -> list[tuple[float, float]]:
        asked.append((bucket_s, since))
        return [(float(t), wave(t)) for t in range(5000, 5120)]

    settings = AutoscalingSettings(metric="rps", target=5, predictive=SEASON)
    scaler = Autoscaler(settings, start=20.0, wall_offset_s=5100.0, load_history=load)
    assert asked == [(1.0, 5120.0 - 7 * 60.0)]
    assert scaler.forecaster is not None and scaler.forecaster.seasons_seen == 2.0


def test_pruning_keeps_only_the_recent_rows_of_the_current_bucket_size(tmp_path):
    store = RateStore(tmp_path / "observability.db")
    store.write("d", 1.0, [(float(t), 1.0) for t in range(10)])
    store.write("d", 2.0, [(0.0, 1.0)])
    store.write("e", 1.0, [(0.0, 1.0)])
    store.prune("d", {1.0: 4.0}, now=10.0)  # keeps 4 s (and a bucket) of 1 s buckets; no 2 s buckets
    assert [ts for ts, _ in store.load("d", 1.0, 0.0)] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert store.load("d", 2.0, 0.0) == [] and store.load("e", 1.0, 0.0) == [(0.0, 1.0)]
