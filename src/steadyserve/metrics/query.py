"""Pure arithmetic over recorded samples, with Prometheus's meaning.

A sample is ``(ts, value)``; counters are cumulative and may reset to zero (a new
instance, a merged process): ``increase`` counts across resets as Prometheus does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]
Sample = tuple[float, float]


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


def matches(labels: Labels, matchers: Mapping[str, str]) -> bool:
    if not matchers:
        return True
    found = dict(labels)
    return all(found.get(k, "") == v for k, v in matchers.items())


def value_at(samples: Sequence[Sample], ts: float) -> float | None:
    """The last value recorded at or before ``ts`` (None before the first; NaN marks a series gone)."""
    found: float | None = None
    for sample_ts, value in samples:
        if sample_ts > ts:
            break
        found = value
    if found is None or math.isnan(found):
        return None
    return found


def increase(samples: Sequence[Sample], since: float, until: float) -> float:
    """How much a counter grew in (since, until], counting across resets.

    The value at ``since`` is the last one recorded at or before it; a series that starts
    inside the window starts from zero (its first calls are in the window too).
    """
    start = value_at(samples, since)
    previous = start if start is not None else 0.0
    total = 0.0
    for ts, value in samples:
        if ts <= since or math.isnan(value):
            continue
        if ts > until:
            break
        total += value - previous if value >= previous else value  # a drop is a reset to zero
        previous = value
    return total


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """``histogram_quantile``: buckets are ``(upper bound, cumulative count)`` sorted, +Inf last.

    Linear interpolation inside the bucket; a quantile in the +Inf bucket answers the
    largest finite bound (as Prometheus does). None when there were no observations.
    """
    if not buckets or not 0.0 <= q <= 1.0:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def increases_on_grid(samples: Sequence[Sample], grid: Sequence[float]) -> list[float]:
    """``increase`` over each interval (grid[i-1], grid[i]], in one pass (len(grid) - 1 values)."""
    out: list[float] = []
    index = 0
    previous: float | None = None
    # The value at the grid's start: the last sample at or before it.
    while index < len(samples) and samples[index][0] <= grid[0]:
        value = samples[index][1]
        previous = None if math.isnan(value) else value
        index += 1
    for end in grid[1:]:
        grown = 0.0
        while index < len(samples) and samples[index][0] <= end:
            value = samples[index][1]
            if not math.isnan(value):
                base = previous if previous is not None else 0.0
                grown += value - base if value >= base else value
                previous = value
            else:
                previous = None
            index += 1
        out.append(grown)
    return out


def values_on_grid(samples: Sequence[Sample], grid: Sequence[float], max_age_s: float) -> list[float | None]:
    """The value at each grid point (the last sample no older than ``max_age_s``; None if none)."""
    out: list[float | None] = []
    index = 0
    last: Sample | None = None
    for point in grid:
        while index < len(samples) and samples[index][0] <= point:
            last = samples[index]
            index += 1
        if last is None or math.isnan(last[1]) or point - last[0] > max_age_s:
            out.append(None)
        else:
            out.append(last[1])
    return out
