"""Finding the load's period from the recorded call rate (``predictive.season_s: auto``).

    finder = SeasonFinder(start=now)
    finder.count(now, calls)            # each tick
    finder.season_s                     # None until a clear period is found, then e.g. 86400.0

The rate is kept in 10 s buckets for up to 15 days; once an hour, the autocorrelation (statsmodels'
``acf``) of what was recorded is searched for its strongest peak between 100 s and 7 days, at a lag
with at least two periods of data behind it, after the correlation first dips below 0.25 (a smooth
load correlates with itself over short lags). A peak counts when its correlation is at least 0.5:
a clear daily pattern scores about 0.9, noise about 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .forecast import RateSeries

AUTO_BUCKET_S = 10.0
AUTO_KEEP_S = 15 * 86400.0
MIN_SEASON_S = 100.0
MAX_SEASON_S = 7 * 86400.0
SEARCH_EVERY_BUCKETS = 360  # an hour
MIN_CORRELATION = 0.5


def detect_season(rates: Sequence[float], bucket_s: float, min_season_s: float = MIN_SEASON_S,
                  max_season_s: float = MAX_SEASON_S) -> float | None:
    """The period of ``rates`` (seconds), or None when no lag correlates clearly."""
    import numpy as np
    from statsmodels.tsa.stattools import acf  # type: ignore[import-untyped,unused-ignore]

    y = np.asarray(rates, dtype=float)
    known = y[~np.isnan(y)]
    if len(known) < 4 or float(known.std()) == 0.0:
        return None
    y = np.where(np.isnan(y), float(known.mean()), y)  # unknown buckets carry no pattern
    shortest = max(2, math.ceil(min_season_s / bucket_s))
    longest = min(len(y) // 2, int(max_season_s / bucket_s))  # two periods of data at least
    if longest <= shortest:
        return None
    correlation: Any = acf(y, nlags=longest + 1, fft=True)
    # A smooth load correlates with itself over short lags: a period's peak comes after the first dip.
    dip = next((lag for lag in range(1, longest + 1) if correlation[lag] < MIN_CORRELATION / 2), None)
    if dip is None:
        return None
    best, best_lag = MIN_CORRELATION, None
    for lag in range(max(shortest, dip), longest + 1):
        value = float(correlation[lag])
        if value >= best and value >= correlation[lag - 1] and value >= correlation[lag + 1]:
            best, best_lag = value, lag
    return None if best_lag is None else _snapped(best_lag * bucket_s)


def _snapped(season_s: float) -> float:
    """A broad peak found within 1 % of whole hours (a day, a week) is that: traffic keeps clock time."""
    hours = round(season_s / 3600)
    return hours * 3600.0 if hours and abs(season_s - hours * 3600) <= 0.01 * season_s else season_s


class SeasonFinder:
    def __init__(self, start: float, history: Sequence[tuple[float, float]] = ()) -> None:
        self.series = RateSeries(AUTO_BUCKET_S, int(AUTO_KEEP_S / AUTO_BUCKET_S), start, history)
        self.season_s: float | None = None
        self.unsaved: list[tuple[float, float]] = []
        self._searched_at = -SEARCH_EVERY_BUCKETS if history else 0

    @property
    def bucket_s(self) -> float:
        return AUTO_BUCKET_S

    def count(self, ts: float, calls: float) -> None:
        for index, rate in self.series.count(ts, calls):
            if not math.isnan(rate):
                self.unsaved.append((self.series.start_of(index), rate))
        if self.season_s is None and self.series.closed - self._searched_at >= SEARCH_EVERY_BUCKETS:
            self._searched_at = self.series.closed
            self.season_s = detect_season(self.series.values(), AUTO_BUCKET_S)

    def rows(self) -> list[tuple[float, float]]:
        """What was recorded, as (bucket start, calls/s): the forecaster starts from it."""
        first = self.series.closed - len(self.series.rates)
        return [(self.series.start_of(first + i), rate) for i, rate in enumerate(self.series.rates)
                if not math.isnan(rate)]

    def take_unsaved(self) -> list[tuple[float, float]]:
        rows, self.unsaved = self.unsaved, []
        return rows
