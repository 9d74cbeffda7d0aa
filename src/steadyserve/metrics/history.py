"""The controller's metrics history: one query interface for alerts, SLOs, the report,
the dashboard and the autoscaler.

Two tiers behind it: every sample of the last ``memory_s`` (default two hours; one
each ``step_s`` = 5 s) in memory, and a per-minute copy in SQLite (``HistoryStore``)
that outlives the controller and reaches back ``retain_s`` (default eight days: the
SLOs' three-day window fits). A query reads memory where it reaches back far enough
and the store before that. Values are cumulative as exposed (counters grow, gauges
are readings), keyed by exposed series name and labels, as Prometheus keeps them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Protocol

from . import query
from .query import Labels, Sample, SeriesKey

STEP_S = 5.0
MEMORY_S = 2 * 3600.0
ROLLUP_S = 60.0


class HistoryStore(Protocol):
    def write(self, ts: float, values: Mapping[SeriesKey, float]) -> None: ...
    def select(self, name: str, since: float, until: float) -> dict[Labels, list[Sample]]: ...
    def prune(self, before: float) -> None: ...
    def earliest(self) -> float | None: ...


class History:
    def __init__(self, step_s: float = STEP_S, memory_s: float = MEMORY_S, store: HistoryStore | None = None,
                 rollup_s: float = ROLLUP_S) -> None:
        self.step_s = step_s
        self.memory_s = memory_s
        self.store = store
        self.rollup_s = rollup_s
        self._ring: dict[SeriesKey, deque[Sample]] = {}
        self._names: dict[str, set[SeriesKey]] = {}
        self._times: deque[float] = deque()
        self._last_rollup = -math.inf
        self._rolled: dict[SeriesKey, float] = {}  # what the store holds last for each series

    # --- writing -----------------------------------------------------------------------
    def add(self, ts: float, values: Mapping[SeriesKey, float]) -> None:
        """Record one step. A series absent from ``values`` gets a NaN (it is gone: staleness)."""
        if self._times and ts <= self._times[-1]:
            return  # the wall clock stepped back: keep the series ordered
        self._times.append(ts)
        capacity = int(self.memory_s / self.step_s) + 2
        for key, value in values.items():
            ring = self._ring.get(key)
            if ring is None:
                ring = self._ring[key] = deque(maxlen=capacity)
                self._names.setdefault(key[0], set()).add(key)
            ring.append((ts, float(value)))
        for key, ring in self._ring.items():
            if key not in values and ring and not math.isnan(ring[-1][1]):
                ring.append((ts, math.nan))
        self._forget_before(ts - self.memory_s)
        if self.store is not None and ts - self._last_rollup >= self.rollup_s:
            self._roll_up(ts, values)

    def _forget_before(self, cutoff: float) -> None:
        while self._times and self._times[0] < cutoff:
            self._times.popleft()
        for key, ring in list(self._ring.items()):
            while ring and ring[0][0] < cutoff:
                ring.popleft()
            if not ring or (len(ring) == 1 and math.isnan(ring[0][1])):  # gone before the window
                del self._ring[key]
                self._names[key[0]].discard(key)

    def flush(self) -> None:
        """Write the latest step to the store now (the controller is stopping)."""
        if self.store is None or not self._times:
            return
        ts = self._times[-1]
        latest = {key: ring[-1][1] for key, ring in self._ring.items() if ring and ring[-1][0] == ts
                  and not math.isnan(ring[-1][1])}
        self._roll_up(ts, latest)

    def _roll_up(self, ts: float, values: Mapping[SeriesKey, float]) -> None:
        """Write the series that changed since the last roll-up (an idle instance writes nothing)."""
        assert self.store is not None
        changed = {k: float(v) for k, v in values.items() if self._rolled.get(k) != float(v)}
        for key in [k for k, v in self._rolled.items() if k not in values and not math.isnan(v)]:
            changed[key] = math.nan
        if changed:
            self.store.write(ts, changed)
            self._rolled.update(changed)
        self._last_rollup = ts

    # --- reading -------------------------------------------------------------------------
    @property
    def memory_since(self) -> float:
        return self._times[0] if self._times else math.inf

    def earliest(self) -> float | None:
        """The time of the oldest sample held (memory or store); None when empty."""
        stored = self.store.earliest() if self.store is not None else None
        found = min(t for t in (stored, self.memory_since) if t is not None)
        return None if math.isinf(found) else found

    def select(self, name: str, matchers: Mapping[str, str] | None = None, since: float = -math.inf,
               until: float = math.inf) -> dict[Labels, list[Sample]]:
        """Samples of each series of ``name`` whose labels match: those in (since, until], and the
        last one at or before ``since`` (what a value at ``since`` or an increase needs)."""
        matchers = matchers or {}
        found: dict[Labels, list[Sample]] = {}
        if self.store is not None and since < self.memory_since:
            for labels, samples in self.store.select(name, since, min(until, self.memory_since)).items():
                if query.matches(labels, matchers):
                    found[labels] = [s for s in samples if s[0] < self.memory_since]
        for key in self._names.get(name, ()):
            labels = key[1]
            if not query.matches(labels, matchers):
                continue
            samples = found.setdefault(labels, [])
            samples.extend(_window(self._ring[key], since, until))
        return found

    def increase(self, name: str, matchers: Mapping[str, str] | None, window_s: float, now: float,
                 by: tuple[str, ...] = ()) -> dict[Labels, float]:
        """How much a counter grew over the window, summed over the series of each ``by`` group."""
        sums: dict[Labels, float] = {}
        for labels, samples in self.select(name, matchers, now - window_s, now).items():
            group = _group(labels, by)
            sums[group] = sums.get(group, 0.0) + query.increase(samples, now - window_s, now)
        return sums

    def total_increase(self, name: str, matchers: Mapping[str, str] | None, window_s: float, now: float) -> float:
        return sum(self.increase(name, matchers, window_s, now).values())

    def latest(self, name: str, matchers: Mapping[str, str] | None, now: float,
               max_age_s: float | None = None) -> dict[Labels, float]:
        """The value of each live series at ``now`` (one gone or older than ``max_age_s`` is left out)."""
        max_age_s = 3 * self.step_s if max_age_s is None else max_age_s
        values: dict[Labels, float] = {}
        for labels, samples in self.select(name, matchers, now - max_age_s, now).items():
            recent = [s for s in samples if now - max_age_s <= s[0] <= now]
            if recent and not math.isnan(recent[-1][1]):
                values[labels] = recent[-1][1]
        return values

    def quantile(self, q: float, histogram: str, matchers: Mapping[str, str] | None, window_s: float,
                 now: float) -> float | None:
        """The q-quantile of what a histogram observed over the window, all matching series together."""
        by_bound: dict[float, float] = {}
        for labels, grew in self.increase(f"{histogram}_bucket", matchers, window_s, now, by=("le",)).items():
            bound = float(dict(labels).get("le", "+Inf"))
            by_bound[bound] = by_bound.get(bound, 0.0) + grew
        return query.bucket_quantile(q, sorted(by_bound.items()))

    def grid_increase(self, name: str, matchers: Mapping[str, str] | None, grid: list[float],
                      by: tuple[str, ...] = ()) -> dict[Labels, list[float]]:
        """A counter's growth over each interval of ``grid``, summed per ``by`` group (for reports, charts)."""
        sums: dict[Labels, list[float]] = {}
        for labels, samples in self.select(name, matchers, grid[0], grid[-1]).items():
            grown = query.increases_on_grid(samples, grid)
            group = _group(labels, by)
            found = sums.get(group)
            sums[group] = grown if found is None else [a + b for a, b in zip(found, grown, strict=True)]
        return sums

    def grid_values(self, name: str, matchers: Mapping[str, str] | None, grid: list[float],
                    max_age_s: float) -> dict[Labels, list[float | None]]:
        """Each series' value at each grid point (None where it had none)."""
        return {labels: query.values_on_grid(samples, grid, max_age_s)
                for labels, samples in self.select(name, matchers, grid[0], grid[-1]).items()}

    def grid_quantile(self, q: float, histogram: str, matchers: Mapping[str, str] | None,
                      grid: list[float]) -> list[float | None]:
        """The q-quantile of each grid interval's observations."""
        by_le = self.grid_increase(f"{histogram}_bucket", matchers, grid, by=("le",))
        bounds = sorted((float(dict(labels).get("le", "+Inf")), grown) for labels, grown in by_le.items())
        return [query.bucket_quantile(q, [(bound, grown[i]) for bound, grown in bounds])
                for i in range(len(grid) - 1)]

    def steps(self, since: float, until: float) -> list[float]:
        """The times of the in-memory steps in [since, until] (what a chart's x axis can use)."""
        return [t for t in self._times if since <= t <= until]

    def prune_store(self, retain_s: float, now: float) -> None:
        if self.store is not None:
            self.store.prune(now - retain_s)


def _window(samples: Iterable[Sample], since: float, until: float) -> list[Sample]:
    out: list[Sample] = []
    before: Sample | None = None
    for sample in samples:
        if sample[0] <= since:
            before = sample
        elif sample[0] <= until:
            out.append(sample)
        else:
            break
    return ([before] if before is not None else []) + out


def _group(labels: Labels, by: tuple[str, ...]) -> Labels:
    if not by:
        return ()
    found = dict(labels)
    return tuple((k, found.get(k, "")) for k in by)
