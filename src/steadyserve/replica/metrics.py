"""Prometheus metrics of one replica (its own registry, text exposition)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ReplicaMetrics:
    def __init__(self, replica_id: str, service: str) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call] # the *_created series only add noise here
        self.registry = CollectorRegistry()
        labels = {"replica": replica_id, "service": service}
        self.requests = Counter(
            "steady_requests", "Handler requests by status code",
            ["handler", "code"], registry=self.registry,
        )
        self.errors = Counter(
            "steady_errors", "Handler requests answered with status >= 500",
            ["handler"], registry=self.registry,
        )
        self.latency = Histogram(
            "steady_request_duration_seconds", "Handler latency",
            ["handler"], buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )
        self.inflight = Gauge("steady_inflight_requests", "Requests being handled", registry=self.registry)
        self.batch_size = Histogram(
            "steady_batch_size", "Calls per executed batch",
            ["handler"], buckets=BATCH_BUCKETS, registry=self.registry,
        )
        info = Gauge("steady_replica_info", "Replica identity", list(labels), registry=self.registry)
        info.labels(**labels).set(1)
        self._children: dict[tuple[str, int], tuple[object, object]] = {}

    def observe(self, handler: str, code: int, duration_s: float) -> None:
        key = (handler, code)
        children = self._children.get(key)
        if children is None:  # label lookups are slow; cache the children
            children = (self.requests.labels(handler, str(code)), self.latency.labels(handler))
            self._children[key] = children
        children[0].inc()  # type: ignore[attr-defined]
        children[1].observe(duration_s)  # type: ignore[attr-defined]
        if code >= 500:
            self.errors.labels(handler).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
