"""What one gateway process keeps per deployment and per replica between calls."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import orjson

from ..wire.http11 import REPLICA_KEY_HEADER, Request
from ..wire.upstream import UpstreamPool
from .admission import LatencyAverage
from .balancing import Balancer, make_balancer
from .concurrency import GradientSettings, GradientState, initial_state
from .outcomes import RevisionOutcomes
from .outlier import OutlierPolicy, OutlierState
from .retry import RetryBudget
from .routes import ServiceRoute


class UpstreamReplica:
    """One replica incarnation as this gateway sees it."""

    __slots__ = ("credential", "endpoint", "generation", "id", "inflight", "key_header", "limiter", "outlier", "pool",
                 "refusals", "revision", "saturated_until")

    def __init__(self, id: str, generation: int, endpoint: str, revision: int = 0,
                 pool: UpstreamPool | None = None, credential: str | None = None) -> None:
        self.id = id
        self.generation = generation
        self.endpoint = endpoint
        self.revision = revision
        self.credential = credential
        # Sent with every call: a replica on a network answers nothing without it.
        self.key_header = b"" if credential is None else REPLICA_KEY_HEADER + b": " + credential.encode("ascii") + b"\r\n"
        self.pool = pool if pool is not None else UpstreamPool(endpoint)
        self.inflight = 0  # calls from this gateway process
        self.outlier = OutlierState()
        self.limiter: GradientState | None = None  # adaptive concurrency, when the deployment uses it
        # It said it is at its limit: no calls from this gateway until then (backs off while it keeps saying so).
        self.saturated_until = 0.0
        self.refusals = 0


class ServiceRuntime:
    """One deployment: its route, replicas, and the state its calls share."""

    def __init__(self, name: str, route: ServiceRoute, replicas: list[UpstreamReplica],
                 outcomes: dict[int, RevisionOutcomes] | None = None, now: float = 0.0) -> None:
        self.name = name
        self.route = route
        self.replicas = replicas
        self.balancer: Balancer = make_balancer(route.policy)
        self.budget = RetryBudget(ratio=route.retry_budget_ratio)
        self.idempotent = {h: r.idempotent for h, r in route.handlers.items()}
        self.key_of = _key_extractor(route.hash_key) if route.policy == "consistent_hash" else None
        o = route.outlier
        self.outlier_policy = OutlierPolicy(o.consecutive_failures, o.base_ejection_s, o.max_ejection_s,
                                            o.max_ejected_percent, o.panic_threshold_percent)
        admission = route.admission
        self.gradient: GradientSettings | None = (
            GradientSettings(max_limit=admission.max_ongoing_per_replica) if admission.adaptive else None)
        if self.gradient is not None:
            for replica in replicas:
                if replica.limiter is None:
                    replica.limiter = initial_state(self.gradient, now)
        self.latency = LatencyAverage()
        self.outcomes = outcomes if outcomes is not None else {}
        # Calls queued for a free replica, first come first served.
        self.waiters: deque[asyncio.Future[None]] = deque()

    def limit_of(self, replica: UpstreamReplica) -> int:
        if replica.limiter is not None and self.gradient is not None:
            return replica.limiter.whole_limit
        return self.route.admission.max_ongoing_per_replica

    def outcomes_of(self, revision: int) -> RevisionOutcomes:
        found = self.outcomes.get(revision)
        if found is None:
            found = self.outcomes[revision] = RevisionOutcomes()
        return found

    def inherit(self, old: ServiceRuntime) -> None:
        """Keep what calls in flight and the policies' memory depend on across a table change."""
        if old.route.policy == self.route.policy:
            self.balancer = old.balancer
        self.budget = old.budget
        self.latency = old.latency
        self.waiters = old.waiters

    def wake_one(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


def _key_extractor(spec: str | None) -> Callable[[Request], bytes | None] | None:
    if not spec:
        return None
    source, _, name = spec.partition(":")
    if source == "header":
        header = name.lower().encode()
        return lambda request: request.header(header)
    field = name

    def from_json(request: Request) -> bytes | None:
        try:
            value = orjson.loads(request.body).get(field)
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return None if value is None else str(value).encode()

    return from_json
