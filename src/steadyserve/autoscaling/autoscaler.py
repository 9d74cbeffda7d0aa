"""One deployment's autoscaler: its readings, its forecaster and its policy state.

The controller and ``steady simulate`` drive the same object: ``observe`` each tick, ``decide``
each ``decision_s``, ``applied`` once the count (after the capacity budget) is known, and the
forecaster's fits run where the driver chooses (a thread in the controller, inline in the simulator).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

from .forecast import RateForecaster, bucket_size
from .policy import Decision, Forecast, Reading, ScalingState, Snapshot, applied, decide, mean_over
from .seasons import AUTO_BUCKET_S, AUTO_KEEP_S, SeasonFinder
from .settings import AutoscalingSettings

DEFAULT_STARTUP_S = 10.0  # a replica's start-up time before one has been measured


# (bucket_s, since) -> stored (bucket start, calls/s) rows: the forecaster's history from before a restart
HistoryLoader = Callable[[float, float], Sequence[tuple[float, float]]]


class Autoscaler:
    """``wall_offset_s``: wall-clock time minus the driver's clock; the call-rate history is kept in
    wall-clock time, so that it lines up across controller restarts."""

    def __init__(self, settings: AutoscalingSettings, start: float, wall_offset_s: float = 0.0,
                 load_history: HistoryLoader | None = None) -> None:
        self.settings = settings
        self.state = ScalingState()
        self.readings: deque[Reading] = deque()
        self.last_call_at: float | None = start  # idle time counts from when the autoscaler began to watch
        self.last_decision_at = -math.inf
        self.last: Decision | None = None
        self.last_forecast: Forecast | None = None
        self.wall_offset_s = wall_offset_s
        self.load_history = load_history
        self.finder = self._finder(settings, start)  # season_s: auto, until the season is found
        self.forecaster = self._forecaster(settings, start)
        self.startup_s: float | None = None  # measured: start to ready, smoothed

    def _finder(self, settings: AutoscalingSettings, start: float) -> SeasonFinder | None:
        if not settings.predictive.enabled or settings.predictive.season_s != "auto":
            return None
        wall = start + self.wall_offset_s
        history = self.load_history(AUTO_BUCKET_S, wall - AUTO_KEEP_S) if self.load_history is not None else ()
        return SeasonFinder(wall, history)

    def _forecaster(self, settings: AutoscalingSettings, start: float) -> RateForecaster | None:
        predictive = settings.predictive
        if not predictive.enabled:
            return None
        wall = start + self.wall_offset_s
        if not isinstance(predictive.season_s, float):  # auto: once the finder has found it
            if self.finder is None or self.finder.season_s is None:
                return None
            return RateForecaster(predictive.model_copy(update={"season_s": self.finder.season_s}), wall,
                                  self.finder.rows())
        history: Sequence[tuple[float, float]] = ()
        if self.load_history is not None:
            history = self.load_history(bucket_size(predictive.season_s),
                                        wall - predictive.history_seasons * predictive.season_s)
        return RateForecaster(predictive, wall, history)

    def take_unsaved(self) -> dict[float, list[tuple[float, float]]]:
        """Closed buckets not yet stored, by bucket size; and what to keep of each: see ``kept_s``."""
        rows: dict[float, list[tuple[float, float]]] = {}
        if self.finder is not None:
            rows[self.finder.bucket_s] = self.finder.take_unsaved()
        if self.forecaster is not None:
            rows.setdefault(self.forecaster.bucket_s, []).extend(self.forecaster.take_unsaved())
        return rows

    def kept_s(self) -> dict[float, float]:
        """Seconds of history worth keeping, by bucket size."""
        kept: dict[float, float] = {}
        if self.finder is not None:
            kept[self.finder.bucket_s] = AUTO_KEEP_S
        if self.forecaster is not None:
            span = self.forecaster.settings.history_seasons * self.forecaster.season_s
            kept[self.forecaster.bucket_s] = max(kept.get(self.forecaster.bucket_s, 0.0), span)
        return kept

    def reconfigure(self, settings: AutoscalingSettings, now: float) -> None:
        """New settings; the history and the state stay unless the season changed."""
        if settings.predictive != self.settings.predictive:
            old = self.settings.predictive
            if (self.forecaster is None or not settings.predictive.enabled
                    or settings.predictive.season_s != old.season_s
                    or settings.predictive.history_seasons != old.history_seasons):
                self.finder = self._finder(settings, now)
                self.forecaster = self._forecaster(settings, now)
            else:
                self.forecaster.settings = settings.predictive
        self.settings = settings

    def observe(self, ts: float, load: float, rate: float, calls: float) -> None:
        """A tick's reading: the load in the metric's unit, calls/s, and the calls arrived since the last."""
        self.readings.append(Reading(ts, _sane(load), _sane(rate)))
        horizon = ts - self.settings.window_s
        while self.readings and self.readings[0].ts < horizon:
            self.readings.popleft()
        calls = _sane(calls)
        if calls > 0:
            self.last_call_at = ts
        wall = ts + self.wall_offset_s
        if self.finder is not None:
            self.finder.count(wall, calls)
            if self.forecaster is None and self.finder.season_s is not None:
                self.forecaster = self._forecaster(self.settings, ts)
        if self.forecaster is not None:
            self.forecaster.count(wall, calls)

    def window_means(self) -> tuple[float, float] | None:
        """Load and calls/s averaged over the stable window, as the last decision saw them."""
        if not self.readings:
            return None
        return mean_over(self.readings, self.readings[-1].ts, self.settings.window_s)

    def started(self, startup_s: float) -> None:
        """A replica took this long from start to ready: the forecast's lead follows it."""
        self.startup_s = startup_s if self.startup_s is None else 0.7 * self.startup_s + 0.3 * startup_s

    def due(self, now: float) -> bool:
        return now - self.last_decision_at >= self.settings.decision_s

    @property
    def lead_s(self) -> float:
        configured = self.settings.predictive.lead_s
        if configured is not None:
            return configured
        startup = self.startup_s if self.startup_s is not None else DEFAULT_STARTUP_S
        return startup + self.settings.decision_s

    def forecast(self, now: float) -> Forecast | None:
        if self.forecaster is None:
            if self.settings.predictive.enabled:
                recorded_h = len(self.finder.series.rates) * AUTO_BUCKET_S / 3600 if self.finder is not None else 0.0
                return Forecast(0.0, False, f"finding the season (season_s: auto): no clear period in the"
                                            f" {recorded_h:.1f} h recorded yet (two periods are needed)", self.lead_s)
            return None
        # Replicas started now serve from then on: capacity before that was decided earlier.
        return self.forecaster.forecast(now + self.wall_offset_s, self.lead_s,
                                        max(0.0, self.lead_s - self.settings.decision_s))

    def decide(self, now: float, current: int, ready: int, min_replicas: int, max_replicas: int,
               waiting: int = 0, busy: float = 0.0) -> Decision:
        self.last_decision_at = now
        self.last_forecast = self.forecast(now)
        snapshot = Snapshot(now=now, current=current, ready=ready, min_replicas=min_replicas,
                            max_replicas=max_replicas, readings=tuple(self.readings), forecast=self.last_forecast,
                            last_call_at=self.last_call_at, waiting=waiting, busy=busy)
        decision = decide(snapshot, self.state, self.settings)
        self.state = decision.state
        self.last = decision
        return decision

    def applied(self, now: float, before: int, after: int) -> None:
        self.state = applied(self.state, now, before, after, self.settings)


MAX_READING = 1e9  # a reading past this (or not a number) is a broken or lying reporter, not load


def _sane(value: float) -> float:
    return min(max(value, 0.0), MAX_READING) if math.isfinite(value) else 0.0
