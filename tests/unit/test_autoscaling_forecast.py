"""The call-rate model behind predictive scaling: buckets, the Holt-Winters fit, the scored error.

Seasons of 60 s in 1 s buckets keep every fit at milliseconds; the forecaster is driven as the
simulator drives it: a count each second, the refit job run inline, a forecast each second.
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Callable

import pytest

from steadyserve.autoscaling.autoscaler import Autoscaler
from steadyserve.autoscaling.forecast import (
    SCORED_FOR_TRUST,
    FittedModel,
    RateForecaster,
    RateSeries,
    fit_rates,
)
from steadyserve.autoscaling.policy import Forecast
from steadyserve.autoscaling.settings import AutoscalingSettings, PredictiveSettings

SEASON_S = 60.0  # one bucket a second, sixty to a season
LEAD_S = 5.0


def wave(t: float) -> float:
    """A clean periodic call rate: 2 to 18 calls/s, its peak at 15 s into each season."""
    return 10.0 + 8.0 * math.sin(2 * math.pi * t / SEASON_S)


def peaked(i: int, season: int, at: float = 0.6) -> float:
    """A sharp daily peak on a base of 5 calls/s: 25 calls/s at ``at`` of the season."""
    distance = min(abs((i % season) / season - at), 1 - abs((i % season) / season - at)) * season
    return 5.0 + 20.0 * math.exp(-distance * distance / (2 * (season / 20) ** 2))


def forecaster(**overrides: object) -> RateForecaster:
    return RateForecaster(PredictiveSettings(enabled=True, season_s=SEASON_S, **overrides), start=0.0)


def drive(fc: RateForecaster, start: int, end: int, rate: Callable[[float], float],
          lead_s: float = LEAD_S) -> list[tuple[int, Forecast]]:
    """Count ``rate`` calls each second from ``start`` to ``end``, refitting and forecasting as the loop does."""
    made = []
    for t in range(start, end):
        fc.count(t, rate(t))
        job = fc.refit_job()
        if job is not None:
            fc.install(job())
        made.append((t, fc.forecast(t, lead_s)))
    return made


@pytest.fixture(scope="module")
def _trained() -> RateForecaster:
    fc = forecaster()
    drive(fc, 0, int(2 * SEASON_S), wave)
    return fc


@pytest.fixture
def trained(_trained: RateForecaster) -> RateForecaster:
    """Two clean seasons of ``wave`` (to t = 120 s): the forecast is trusted."""
    return copy.deepcopy(_trained)


# --- RateSeries -----------------------------------------------------------------------------------


def test_calls_become_a_rate_when_their_bucket_closes():
    series = RateSeries(bucket_s=2.0, keep=10, start=100.0)
    assert series.count(100.5, 3) == []
    assert series.count(101.9, 5) == []
    assert series.count(102.1, 4) == [(0, 4.0)]  # 8 calls in 2 s
    assert (series.values(), series.closed) == ([4.0], 1)


def test_buckets_passed_without_a_count_are_unknown():
    series = RateSeries(bucket_s=1.0, keep=10, start=0.0)
    series.count(0.2, 2)
    closed = series.count(4.5, 7)
    assert [i for i, _ in closed] == [0, 1, 2, 3]
    assert closed[0] == (0, 2.0) and all(math.isnan(rate) for _, rate in closed[1:])
    assert series.count(5.0, 0) == [(4, 7.0)]  # the calls counted at 4.5 fill the bucket they arrived in


def test_only_the_newest_buckets_are_kept():
    series = RateSeries(bucket_s=1.0, keep=3, start=0.0)
    for t in range(6):
        series.count(t, t)
    assert series.values() == [2.0, 3.0, 4.0]


def test_negative_counts_add_nothing():
    series = RateSeries(bucket_s=1.0, keep=3, start=0.0)
    series.count(0.1, 4)
    series.count(0.5, -10)
    assert series.count(1.0, 0) == [(0, 4.0)]


# --- fit_rates ------------------------------------------------------------------------------------


def wape(forecast: list[float], actual: list[float]) -> float:
    return sum(abs(f - a) for f, a in zip(forecast, actual, strict=True)) / sum(actual)


@pytest.mark.parametrize("seasons", [1.5, 2, 3])
@pytest.mark.parametrize("season", [24, 60])
def test_a_clean_seasonal_series_is_forecast_a_season_ahead(season, seasons):
    n = int(seasons * season)
    history = [peaked(i, season) for i in range(n)]
    ahead, _ = fit_rates(history, season, None, season)
    actual = [peaked(i, season) for i in range(n, n + season)]
    assert abs(ahead.index(max(ahead)) - actual.index(max(actual))) <= 1
    assert wape(ahead, actual) < 0.01


def test_a_noisy_seasonal_series_is_forecast_within_a_few_percent():
    rng = random.Random(7)
    history = [peaked(i, 60) * rng.uniform(0.9, 1.1) for i in range(180)]
    ahead, _ = fit_rates(history, 60, None, 60)
    actual = [peaked(i, 60) for i in range(180, 240)]
    assert abs(ahead.index(max(ahead)) - actual.index(max(actual))) <= 1
    assert wape(ahead, actual) < 0.1


def test_unknown_buckets_are_filled_from_a_season_before_when_fitting():
    history: list[float] = [peaked(i, 24) for i in range(72)]
    for i in (0, 5, 6, 30, 31, 50):
        history[i] = math.nan
    ahead, _ = fit_rates(history, 24, None, 24)
    assert all(math.isfinite(v) for v in ahead)
    assert wape(ahead, [peaked(i, 24) for i in range(72, 96)]) < 0.02


def test_a_cheap_refit_keeps_the_parameters_it_is_given():
    history = [peaked(i, 24) for i in range(72)]
    _, params = fit_rates(history, 24, None, 4)
    assert set(params) == {"smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend"}
    ahead, reused = fit_rates(history + [peaked(72, 24)], 24, params, 4)
    assert reused == pytest.approx(params)
    assert wape(ahead, [peaked(i, 24) for i in range(73, 77)]) < 0.02


def test_a_forecast_rate_is_never_negative():
    falling = [max(0.0, 50 - 0.5 * i) for i in range(120)]
    ahead, _ = fit_rates(falling, 60, None, 60)
    assert min(ahead) >= 0.0


# --- RateForecaster: buckets and fits -------------------------------------------------------------


@pytest.mark.parametrize(("season_s", "bucket_s", "season"), [
    (10, 1.0, 10), (60, 1.0, 60), (288, 2.0, 144), (86400, 600.0, 144),
])
def test_a_season_is_kept_in_144_buckets_of_at_least_a_second(season_s, bucket_s, season):
    fc = RateForecaster(PredictiveSettings(season_s=season_s), start=0.0)
    assert (fc.bucket_s, fc.season) == (bucket_s, season)


def test_an_automatic_season_must_be_resolved_first():
    with pytest.raises(ValueError, match="a season length is needed"):
        RateForecaster(PredictiveSettings(season_s="auto"), start=0.0)


def test_the_history_is_at_most_history_seasons_long():
    fc = forecaster(history_seasons=2)
    for t in range(300):
        fc.count(t, 1)
    assert fc.seasons_seen == 2


def test_no_fit_before_a_season_and_two_buckets_of_history():
    fc = forecaster()
    for t in range(62):
        fc.count(t, wave(t))
        assert fc.refit_job() is None
    fc.count(62, wave(62))
    assert fc.refit_job() is not None


def test_no_refit_until_a_new_bucket_closes(trained):
    job = trained.refit_job()
    assert job is None  # the last closed bucket was fitted when it closed
    trained.count(119.5, 3)  # into the open bucket: nothing closed
    assert trained.refit_job() is None
    trained.count(120.0, 3)
    assert trained.refit_job() is not None


def test_a_failed_fit_is_tried_again(trained):
    trained.count(120, wave(120))
    assert trained.refit_job() is not None
    trained.refit_abandoned()
    assert trained.refit_job() is not None


def test_an_older_fit_arriving_late_is_ignored(trained):
    current = trained.model
    assert current is not None
    trained.install(FittedModel(current.last_bucket - 3, (99.0,) * 10, None, full=False))
    assert trained.model is current


def test_the_parameters_are_optimised_a_few_times_a_season():
    fc = RateForecaster(PredictiveSettings(enabled=True, season_s=20.0), start=0.0)  # 20 buckets: fewer fits
    models = []
    for t in range(60):
        fc.count(t, wave(3 * t))
        job = fc.refit_job()
        if job is not None:
            models.append(job())
            fc.install(models[-1])
    last_season = [m for m in models if m.last_bucket >= 2 * fc.season - 1]
    assert sum(m.full for m in last_season) == 4  # FULL_FITS_PER_SEASON; the other refits reuse their parameters


# --- RateForecaster: when a forecast is trusted ---------------------------------------------------


@pytest.mark.parametrize("min_seasons", [1, 2])
def test_no_forecast_is_trusted_while_learning_the_load(min_seasons):
    fc = RateForecaster(PredictiveSettings(enabled=True, season_s=20.0, min_seasons=min_seasons), start=0.0)
    made = drive(fc, 0, 20 * min_seasons, lambda t: wave(3 * t))
    assert not any(f.reliable for _, f in made)
    assert made[10][1].why == (f"learning the load: 0.50 of the {min_seasons} seasons ({min_seasons * 20} s) of"
                               " history needed")


def test_then_forecasts_are_made_but_not_trusted_until_six_are_scored():
    fc = forecaster()
    made = drive(fc, 0, 80, wave)
    measuring = [(t, f) for t, f in made if f.why.startswith("measuring")]
    assert measuring and not any(f.reliable for _, f in measuring)
    scored = [int(re.search(r"\((\d) of 6 forecasts scored\)", f.why).group(1)) for _, f in measuring]
    assert scored == sorted(scored) and scored[0] == 0 and scored[-1] == SCORED_FOR_TRUST - 1
    assert all(f.rate > 0 for _, f in measuring)  # the rate is there to show; it is just not used
    first_trusted = next(t for t, f in made if f.reliable)
    assert first_trusted == measuring[-1][0] + 1


def test_a_clean_periodic_series_is_forecast_reliably(trained):
    made = drive(trained, 120, 150, wave)
    assert all(f.reliable and f.why == "forecast error 0%" for _, f in made)


@pytest.mark.parametrize("now", [121, 130, 135, 145])
def test_the_forecast_is_the_highest_rate_within_the_lead(trained, now):
    drive(trained, 120, now + 1, wave)
    forecast = trained.forecast(now, 10.0)
    assert forecast.rate == pytest.approx(max(wave(t) for t in range(now, now + 11)), rel=0.02)
    assert forecast.lead_s == 10.0


def test_the_forecast_can_skip_the_buckets_before_new_replicas_are_ready(trained):
    drive(trained, 120, 141, wave)  # the season's peak was at 135 s
    whole = trained.forecast(140, 10.0)
    later = trained.forecast(140, 10.0, from_s=5.0)
    assert whole.rate == pytest.approx(wave(140), rel=0.02)
    assert later.rate == pytest.approx(wave(145), rel=0.02)


def test_a_forecast_past_the_last_fit_is_out_of_date(trained):
    forecast = trained.forecast(1000.0, LEAD_S)
    assert (forecast.reliable, forecast.why) == (False, "the last forecast is out of date")


ERROR_OVER_LIMIT = re.compile(r"^forecast error \d+% over the last \d+ s \(limit 30%\)$")


@pytest.mark.parametrize("changed", [
    lambda t: 5 * wave(t),  # the load suddenly five times the usual
    lambda t: wave(t + SEASON_S / 2),  # the day's pattern shifted by half a season
], ids=["load-5x", "shifted-half-a-season"])
def test_a_season_unlike_the_ones_before_makes_the_forecast_unreliable(trained, changed):
    made = drive(trained, 120, 140, changed)
    distrusted = [f for _, f in made if not f.reliable]
    assert distrusted and all(ERROR_OVER_LIMIT.match(f.why) for f in distrusted)


@pytest.mark.parametrize(("max_error", "trusted"), [(0.3, False), (10.0, True)])
def test_the_error_limit_is_the_settings_max_error(_trained, max_error, trusted):
    fc = copy.deepcopy(_trained)
    fc.settings = PredictiveSettings(enabled=True, season_s=SEASON_S, max_error=max_error)
    made = drive(fc, 120, 140, lambda t: 5 * wave(t))
    assert all(f.reliable for _, f in made) is trusted


def test_a_pause_in_counting_is_not_scored_and_the_model_carries_on(trained):
    drive(trained, 120, 125, wave)
    made = drive(trained, 135, 165, wave)  # ten seconds without a count: unknown buckets
    assert all(math.isfinite(f.rate) for _, f in made)
    assert made[-1][1].reliable


def test_the_learning_message_never_says_the_history_needed_is_already_there():
    made = drive(forecaster(), 0, 65, wave)
    assert all(not f.why.startswith("learning the load: 1.00 of the 1 ") for _, f in made)


# --- the forecast in the Autoscaler -----------------------------------------------------------------


def test_the_autoscaler_sizes_for_a_forecast_rise_before_it_arrives(trained):
    settings = AutoscalingSettings(metric="rps", target=2, panic_threshold=100,
                                   predictive=PredictiveSettings(enabled=True, season_s=SEASON_S))
    scaler = Autoscaler(settings, start=0.0)
    scaler.forecaster = trained  # two seasons of ``wave`` already seen
    replicas, decisions = 5, []
    for t in range(120, 135):  # the rise to the season's peak at 135 s
        scaler.observe(t, load=wave(t), rate=wave(t), calls=wave(t))
        job = scaler.forecaster.refit_job()
        if job is not None:
            scaler.forecaster.install(job())
        if scaler.due(t):
            decisions.append(scaler.decide(t, current=replicas, ready=replicas, min_replicas=1, max_replicas=20))
            scaler.applied(t, replicas, decisions[-1].replicas)
            replicas = decisions[-1].replicas
    assert scaler.lead_s == 15.0
    assert all(d.predictive_note.startswith("forecast ") for d in decisions)
    assert all(d.predicted is not None and d.predicted > d.reactive for d in decisions)
    assert decisions[-1].replicas == math.ceil(max(wave(t) for t in range(140, 146)) / 2)  # the lead: 10 to 15 s ahead
