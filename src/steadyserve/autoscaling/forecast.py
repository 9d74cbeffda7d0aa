"""The call-rate model behind predictive scaling: Holt-Winters (statsmodels), its error, its reliability.

    forecaster = RateForecaster(settings.predictive)
    forecaster.count(now, calls)                 # calls arrived since the last count
    job = forecaster.refit_job()                 # a closure to run off the loop (a thread), or None
    if job: forecaster.install(job())
    forecaster.forecast(now, lead_s)             # Forecast(rate=..., reliable=..., why=...)

The rate is kept in buckets of 1/144 of the season (at least 1 s), at most ``history_seasons`` of
them. Each closed bucket refits the model cheaply (the smoothing parameters of the last full fit,
about a millisecond); a full fit (the parameters optimised) runs a few times a season. Each forecast
made ``lead`` ahead is scored against what then arrived: the weighted absolute percentage error over
the recent buckets decides whether forecasts are used at all.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .policy import Forecast
from .settings import PredictiveSettings

BUCKETS_PER_SEASON = 144  # ten minutes of a day
MIN_BUCKET_S = 1.0
FULL_FITS_PER_SEASON = 4
SCORED_FOR_TRUST = 6
MAX_UNSAVED = 10_000  # closed buckets waiting for the driver to store them  # forecasts scored before any is used
ERROR_WINDOW_SEASONS = 1 / 8  # the error is judged over the last eighth of a season (three hours of a day)


@dataclass(frozen=True)
class FittedModel:
    """A fit's forecast: calls/s for each bucket after the last one it saw."""

    last_bucket: int  # index of the last bucket the fit used
    rates: tuple[float, ...]  # forecast for buckets last_bucket + 1, + 2, ...
    params: dict[str, float] | None  # smoothing parameters, reused by the cheap refits
    full: bool  # the parameters were optimised in this fit


class RateSeries:
    """Calls counted into fixed buckets since a start; the newest ``keep`` buckets kept, as calls/s."""

    def __init__(self, bucket_s: float, keep: int, start: float,
                 history: Sequence[tuple[float, float]] = ()) -> None:
        self.bucket_s = bucket_s
        # Buckets on a grid of multiples of bucket_s: a restarted controller's buckets line up with the stored ones.
        self.origin = math.floor(start / bucket_s) * bucket_s  # bucket i: [origin + i*bucket_s, ... + bucket_s)
        self.rates: deque[float] = deque(maxlen=keep)
        self.open = 0  # index of the bucket being filled
        self.open_calls = 0.0
        earlier = [(ts, rate) for ts, rate in history if ts < self.origin and math.isfinite(rate) and rate >= 0]
        if earlier:  # recorded before: they come first, gaps unknown (NaN)
            first = math.floor(min(ts for ts, _ in earlier) / bucket_s) * bucket_s
            # Rows of a finer grid (a season found later) are averaged into each bucket.
            sums: dict[int, list[float]] = {}
            for ts, rate in earlier:
                sums.setdefault(int((ts - first) // bucket_s), []).append(rate)
            count = round((self.origin - first) / bucket_s)
            for i in range(max(0, count - keep), count):
                found = sums.get(i)
                self.rates.append(sum(found) / len(found) if found else math.nan)
            self.open, self.origin = count, first

    def start_of(self, index: int) -> float:
        return self.origin + index * self.bucket_s

    @property
    def closed(self) -> int:
        """Index one past the last closed bucket."""
        return self.open

    def count(self, ts: float, calls: float) -> list[tuple[int, float]]:
        """Add calls arrived at ``ts``; returns the buckets this closed, with their rates."""
        index = int((ts - self.origin) // self.bucket_s)
        closed: list[tuple[int, float]] = []
        while index > self.open:
            # Buckets passed without a count (the controller was stopped or paused) are unknown.
            rate = self.open_calls / self.bucket_s if not closed else math.nan
            self.rates.append(rate)
            closed.append((self.open, rate))
            self.open += 1
            self.open_calls = 0.0
        self.open_calls += max(0.0, calls)
        return closed

    def values(self) -> list[float]:
        return list(self.rates)


def fit_rates(values: Sequence[float], season: int, params: dict[str, float] | None,
              horizon: int) -> tuple[list[float], dict[str, float]]:
    """Holt-Winters (additive damped trend, additive season) on ``values``; the next ``horizon`` rates.

    With ``params`` the smoothing parameters are fixed (a cheap refit); else they are optimised.
    With less than two seasons the initial state is the first season's (statsmodels' heuristic
    needs two)."""
    import numpy as np
    from statsmodels.tsa.holtwinters import ExponentialSmoothing  # type: ignore[import-untyped,unused-ignore]

    y = _filled(np.asarray(values, dtype=float), season)
    kwargs: dict[str, Any] = {"trend": "add", "damped_trend": True, "seasonal": "add", "seasonal_periods": season}
    if len(y) >= 2 * season:
        kwargs["initialization_method"] = "heuristic"
    else:
        first = y[:season]
        kwargs.update(initialization_method="known", initial_level=float(first.mean()), initial_trend=0.0,
                      initial_seasonal=first - first.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; a poor fit shows in the scored error
        model = ExponentialSmoothing(y, **kwargs)
        if params is None:
            fit = model.fit()
        else:
            fit = model.fit(optimized=False, **params)
        ahead = fit.forecast(horizon)
    names = ("smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend")
    used = {n: float(fit.params[n]) for n in names if fit.params.get(n) is not None and math.isfinite(fit.params[n])}
    return [max(0.0, float(v)) if math.isfinite(v) else 0.0 for v in ahead], used


def _filled(y: Any, season: int) -> Any:
    """Unknown buckets take the value a season before, else the one before, else 0."""
    for i in range(len(y)):
        if y[i] != y[i]:  # NaN
            y[i] = y[i - season] if i >= season else (y[i - 1] if i > 0 else 0.0)
    return y


def bucket_size(season_s: float) -> float:
    return max(MIN_BUCKET_S, season_s / BUCKETS_PER_SEASON)


class RateForecaster:
    """One deployment's call-rate history, model and forecast error."""

    def __init__(self, settings: PredictiveSettings, start: float,
                 history: Sequence[tuple[float, float]] = ()) -> None:
        if not isinstance(settings.season_s, float):
            raise ValueError("a season length is needed")  # "auto" is resolved before (see seasons.py)
        self.settings = settings
        self.season_s = settings.season_s
        self.bucket_s = bucket_size(self.season_s)
        self.season = max(2, round(self.season_s / self.bucket_s))
        self.series = RateSeries(self.bucket_s, self.season * settings.history_seasons, start, history)
        self.unsaved: list[tuple[float, float]] = []  # closed buckets (start, calls/s) the driver may store
        self.model: FittedModel | None = None
        self.params: dict[str, float] | None = None
        self._fitted_through = -1  # the last bucket a fit was started on
        self._full_fit_at = -math.inf  # bucket index of the last full fit
        self._predicted: dict[int, float] = {}  # bucket -> rate forecast ``lead`` ahead of it
        self._scored: deque[tuple[float, float]] = deque(maxlen=max(SCORED_FOR_TRUST,
                                                                    int(self.season * ERROR_WINDOW_SEASONS)))
        self._lead_buckets = 1

    # --- what arrives ------------------------------------------------------------------
    def count(self, ts: float, calls: float) -> None:
        for index, rate in self.series.count(ts, calls):
            if not math.isnan(rate):
                self.unsaved.append((self.series.start_of(index), rate))
                del self.unsaved[:-MAX_UNSAVED]
            predicted = self._predicted.pop(index, None)
            if predicted is not None and not math.isnan(rate):
                self._scored.append((abs(predicted - rate), rate))
        for index in [i for i in self._predicted if i < self.series.closed]:
            del self._predicted[index]

    def take_unsaved(self) -> list[tuple[float, float]]:
        rows, self.unsaved = self.unsaved, []
        return rows

    @property
    def seasons_seen(self) -> float:
        return len(self.series.rates) / self.season

    # --- fitting (the job runs off the controller's loop) -----------------------------------
    def refit_job(self) -> Callable[[], FittedModel] | None:
        """A fit of the closed buckets when one closed since the last job and enough history exists;
        None otherwise. The driver runs one at a time (a job for a later bucket supersedes)."""
        last = self.series.closed - 1
        if last <= self._fitted_through or len(self.series.rates) < self.season + 2:
            return None
        self._fitted_through = last
        values = self.series.values()
        full = self.params is None or last - self._full_fit_at >= self.season / FULL_FITS_PER_SEASON
        params = None if full else dict(self.params or {})
        horizon = self._lead_buckets + max(2, self.season // 8)
        season = self.season

        def job() -> FittedModel:
            rates, used = fit_rates(values, season, params, horizon)
            return FittedModel(last, tuple(rates), used, full=params is None)

        return job

    def refit_abandoned(self) -> None:
        """The job failed: the next call of ``refit_job`` tries again."""
        self._fitted_through = -1

    def install(self, model: FittedModel) -> None:
        if self.model is not None and model.last_bucket < self.model.last_bucket:
            return
        self.model = model
        if model.full:
            self.params = model.params
            self._full_fit_at = model.last_bucket
        # What this fit says ``lead`` ahead is scored when that bucket closes.
        ahead = model.last_bucket + self._lead_buckets
        if len(model.rates) >= self._lead_buckets:
            self._predicted[ahead] = model.rates[self._lead_buckets - 1]

    # --- the forecast ----------------------------------------------------------------------
    def error(self) -> float | None:
        """Weighted absolute percentage error of the recent forecasts; None before enough were scored."""
        if len(self._scored) < SCORED_FOR_TRUST:
            return None
        actual = sum(a for _, a in self._scored)
        missed = sum(e for e, _ in self._scored)
        if actual <= 0:
            return 0.0 if missed <= 0 else math.inf
        return missed / actual

    def forecast(self, now: float, lead_s: float, from_s: float = 0.0) -> Forecast:
        """The highest rate forecast from ``now + from_s`` to ``now + lead_s``, and whether it can be trusted."""
        self._lead_buckets = max(1, math.ceil(lead_s / self.bucket_s))
        needed = self.settings.min_seasons
        if self.seasons_seen < needed:
            return Forecast(0.0, False, f"learning the load: {self.seasons_seen:.2f} of the {needed:g} seasons"
                                        f" ({needed * self.season_s:g} s) of history needed", lead_s)
        if self.model is None:
            return Forecast(0.0, False, "fitting the first model", lead_s)
        model = self.model
        first = int((now + min(from_s, lead_s) - self.series.origin) // self.bucket_s)
        last = int((now + lead_s - self.series.origin) // self.bucket_s)
        offsets = range(first - model.last_bucket, last - model.last_bucket + 1)
        rates = [model.rates[i - 1] for i in offsets if 1 <= i <= len(model.rates)]
        if not rates:
            return Forecast(0.0, False, "the last forecast is out of date", lead_s)
        error = self.error()
        if error is None:
            return Forecast(max(rates), False, f"measuring the forecast's error ({len(self._scored)} of"
                                               f" {SCORED_FOR_TRUST} forecasts scored)", lead_s)
        limit = self.settings.max_error
        if error > limit:
            return Forecast(max(rates), False, f"forecast error {_pct(error)} over the last"
                                               f" {len(self._scored) * self.bucket_s:.0f} s (limit {_pct(limit)})",
                            lead_s)
        return Forecast(max(rates), True, f"forecast error {_pct(error)}", lead_s)


def _pct(value: float) -> str:
    return "inf %" if math.isinf(value) else f"{value:.0%}"
