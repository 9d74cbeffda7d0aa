"""One process's metrics, kept as plain numbers on the data path.

Recording is a dict update (well under a microsecond); nothing is written or locked
per call. A ``ShardWriter`` (shards.py) writes the totals out a few times a second,
where the gateway's ``/metrics`` sums them over every process.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from .catalog import MetricSpec

Key = tuple[str, tuple[str, ...]]  # (metric name, label values in the spec's order)


class Recorder:
    def __init__(self) -> None:
        self.counters: dict[Key, float] = {}
        # counts per bucket (not cumulative; the last one is +Inf), then the sum of observations
        self.histograms: dict[Key, list[float]] = {}
        self.live: dict[Key, float] = {}  # gauges and readings that vanish with their writer

    def inc(self, spec: MetricSpec, values: tuple[str, ...], amount: float = 1.0) -> None:
        key = (spec.name, values)
        self.counters[key] = self.counters.get(key, 0.0) + amount

    def ensure(self, spec: MetricSpec, values: tuple[str, ...]) -> None:
        """A counter series at zero until it counts: Prometheus's rate() and alerts see 0, not nothing."""
        self.counters.setdefault((spec.name, values), 0.0)

    def observe(self, spec: MetricSpec, values: tuple[str, ...], amount: float) -> None:
        key = (spec.name, values)
        cells = self.histograms.get(key)
        if cells is None:
            cells = self.histograms[key] = [0.0] * (len(spec.buckets) + 2)
        cells[bisect_left(spec.buckets, amount)] += 1  # bucket i holds bounds[i-1] < x <= bounds[i]
        cells[-1] += amount

    def set(self, spec: MetricSpec, values: tuple[str, ...], value: float) -> None:
        self.live[(spec.name, values)] = value

    def replace_live(self, spec: MetricSpec, values: dict[tuple[str, ...], float]) -> None:
        """All of one live metric's series at once: series not named are gone."""
        for key in [k for k in self.live if k[0] == spec.name]:
            del self.live[key]
        for labels, value in values.items():
            self.live[(spec.name, labels)] = value

    def to_json(self) -> dict[str, Any]:
        return {
            "counters": [[name, list(values), value] for (name, values), value in self.counters.items()],
            "histograms": [[name, list(values), cells] for (name, values), cells in self.histograms.items()],
            "live": [[name, list(values), value] for (name, values), value in self.live.items()],
        }
