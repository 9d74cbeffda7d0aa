"""Summed shards as Prometheus text, and as flat series for the controller's history."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .catalog import ALL, BY_NAME, MetricSpec
from .query import SeriesKey
from .recorder import Recorder

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def _cumulative(spec: MetricSpec, cells: list[float]) -> list[tuple[str, float]]:
    out, running = [], 0.0
    for bound, count in zip((*spec.buckets, float("inf")), cells[:-1], strict=True):
        running += count
        out.append((_bound(bound), running))
    return out


def families(total: Recorder) -> Iterator[Metric]:
    """One family per catalogue entry that has a series, in the catalogue's order."""
    scalars: dict[str, list[tuple[tuple[str, ...], float]]] = {}
    for (name, values), value in (*total.counters.items(), *total.live.items()):
        scalars.setdefault(name, []).append((values, value))
    histograms: dict[str, list[tuple[tuple[str, ...], list[float]]]] = {}
    for (name, values), cells in total.histograms.items():
        histograms.setdefault(name, []).append((values, cells))
    for spec in ALL:
        family: Metric
        if spec.kind == "histogram":
            if spec.name not in histograms:
                continue
            family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
            for values, cells in sorted(histograms[spec.name]):
                family.add_metric(list(values), _cumulative(spec, cells), sum_value=cells[-1])
        else:
            if spec.name not in scalars:
                continue
            kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            family = kind(spec.name, spec.help, labels=spec.labels)
            for values, value in sorted(scalars[spec.name]):
                family.add_metric(list(values), value)
        yield family


class _Snapshot(Collector):
    def __init__(self, total: Recorder) -> None:
        self.total = total

    def collect(self) -> Iterator[Metric]:
        return families(self.total)


def render(total: Recorder) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(total))
    return generate_latest(registry)


def flatten(total: Recorder) -> dict[SeriesKey, float]:
    """Every series as Prometheus names it (``_total``, ``_bucket{le}``, ``_sum``, ``_count``)."""
    flat: dict[SeriesKey, float] = {}
    for (name, values), value in (*total.counters.items(), *total.live.items()):
        spec = BY_NAME[name]
        flat[(spec.exposed_name, tuple(sorted(zip(spec.labels, values, strict=True))))] = value
    for (name, values), cells in total.histograms.items():
        spec = BY_NAME[name]
        labels = list(zip(spec.labels, values, strict=True))
        for le, count in _cumulative(spec, cells):
            flat[(f"{name}_bucket", tuple(sorted([*labels, ("le", le)])))] = count
        flat[(f"{name}_sum", tuple(sorted(labels)))] = cells[-1]
        flat[(f"{name}_count", tuple(sorted(labels)))] = sum(cells[:-1])
    return flat
