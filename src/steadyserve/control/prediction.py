"""Failure prediction: what a replica's recent readings say about its next minutes (pure).

Each replica's readings (resident memory, and its handler calls, failures and handler
time as counted since it started) are assessed every tick:

- memory: a robust trend (Theil–Sen: the median of pairwise slopes, so a garbage
  collection or one spike does not bend it) over the last ``window_s``; when the fitted
  line reaches ``resources.memory_mb`` within ``horizon_s``, a forecast says when. With
  ``prediction.replace`` the replica is replaced before it gets there (start a successor,
  wait until it is ready, drain the old one), so no call fails for it.
- latency drift: mean handler time over the window versus the replica's own first
  ``window_s`` of calls; ``latency_drift`` times slower or more is a warning.
- errors: the share of failed calls over the window at or above ``error_ratio``.

Latency and errors only warn: gateways already eject replicas that fail calls, and a
slowdown that all replicas share is load, not a failing replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MIB = 1024 * 1024
MIN_READINGS = 8
MAX_FIT_POINTS = 40  # pairwise slopes grow with the square: thin the readings first
MIN_CALLS = 20  # fewer calls in a window say nothing about a rate or a mean


@dataclass(frozen=True)
class Reading:
    ts: float
    rss_bytes: float
    calls: float  # cumulative since the replica started, as it reports them
    errors: float
    handler_s: float


@dataclass(frozen=True)
class Settings:
    window_s: float = 60.0
    horizon_s: float = 300.0
    latency_drift: float = 3.0
    error_ratio: float = 0.5


@dataclass(frozen=True)
class Forecast:
    kind: Literal["memory", "latency", "errors"]
    message: str
    eta_s: float | None = None  # memory: seconds until the limit


def theil_sen_slope(points: Sequence[tuple[float, float]]) -> float:
    points = _thin(points, MAX_FIT_POINTS)
    slopes = sorted((y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1:]
                    if x2 != x1)
    if not slopes:
        return 0.0
    middle = len(slopes) // 2
    return slopes[middle] if len(slopes) % 2 else (slopes[middle - 1] + slopes[middle]) / 2


def _thin(points: Sequence[tuple[float, float]], most: int) -> Sequence[tuple[float, float]]:
    if len(points) <= most:
        return points
    step = len(points) / most
    return [points[int(i * step)] for i in range(most)]


def memory_forecast(readings: Sequence[Reading], limit_bytes: float, settings: Settings,
                    now: float) -> Forecast | None:
    recent = [r for r in readings if r.ts >= now - settings.window_s]
    if len(recent) < MIN_READINGS or recent[-1].ts - recent[0].ts < settings.window_s / 2:
        return None  # too little history to call it a trend
    points = [(r.ts - now, r.rss_bytes) for r in recent]
    slope = theil_sen_slope(points)
    if slope <= 0:
        return None
    level_now = sorted(y - slope * x for x, y in points)[len(points) // 2]  # the fitted line's value now
    eta_s = max(0.0, (limit_bytes - level_now) / slope)
    if eta_s > settings.horizon_s:
        return None
    return Forecast("memory", f"resident memory grows {slope * 60 / MIB:.1f} MiB/min and reaches the limit of"
                    f" {limit_bytes / MIB:.0f} MiB in about {eta_s:.0f}s (now {level_now / MIB:.0f} MiB)", eta_s)


def _over(readings: Sequence[Reading], since: float, until: float) -> tuple[float, float, float] | None:
    """Calls, failures and handler seconds between the readings nearest ``since`` and ``until``."""
    inside = [r for r in readings if since <= r.ts <= until]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    return last.calls - first.calls, last.errors - first.errors, last.handler_s - first.handler_s


def latency_forecast(readings: Sequence[Reading], settings: Settings, now: float) -> Forecast | None:
    if not readings:
        return None
    started = next((r.ts for r in readings if r.calls > 0), None)
    if started is None:
        return None
    baseline = _over(readings, started, started + settings.window_s)
    recent = _over(readings, now - settings.window_s, now)
    if baseline is None or recent is None or baseline[0] < MIN_CALLS or recent[0] < MIN_CALLS:
        return None
    if recent[0] - baseline[0] == 0 and now - settings.window_s <= started:
        return None  # the two windows are the same calls
    before_s, lately_s = baseline[2] / baseline[0], recent[2] / recent[0]
    if before_s <= 0 or lately_s < settings.latency_drift * before_s:
        return None
    return Forecast("latency", f"handler time drifted from {before_s * 1000:.1f} ms to {lately_s * 1000:.1f} ms"
                    f" per call ({lately_s / before_s:.1f}x) over the last {settings.window_s:g}s")


def error_forecast(readings: Sequence[Reading], settings: Settings, now: float) -> Forecast | None:
    recent = _over(readings, now - settings.window_s, now)
    if recent is None or recent[0] < MIN_CALLS:
        return None
    ratio = recent[1] / recent[0]
    if ratio < settings.error_ratio:
        return None
    return Forecast("errors", f"{ratio:.0%} of its last {recent[0]:.0f} calls failed"
                    f" (over the last {settings.window_s:g}s)")


def assess(readings: Sequence[Reading], limit_bytes: float | None, settings: Settings,
           now: float) -> list[Forecast]:
    found = [latency_forecast(readings, settings, now), error_forecast(readings, settings, now)]
    if limit_bytes is not None:
        found.insert(0, memory_forecast(readings, limit_bytes, settings, now))
    return [f for f in found if f is not None]
