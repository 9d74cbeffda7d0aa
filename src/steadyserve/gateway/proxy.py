"""The gateway's request path: pick a replica, forward bytes, fail over.

Policy lives in small pure pieces (``balancing``, ``outlier``, ``retry``); this
module only gathers their inputs and applies their answers.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from ..auth import Action, TokenBucket, TokenRecord, check
from ..errors import UpstreamDraining, UpstreamError, UpstreamTimeout
from ..types import Clock
from ..wire.http11 import Request, json_response
from ..wire.upstream import UpstreamPool
from .balancing import Balancer, canary_split, make_balancer
from .outlier import OutlierPolicy, OutlierState, on_failure, on_success, routable
from .retry import RetryBudget, decide_retry
from .routes import RoutingTable, ServiceRoute
from .v2 import Answer, route_v2

_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"te",
     b"upgrade", b"proxy-connection"}
)
_NO_REPLICA_HEADER = b"x-steady-replica: none\r\n"
_PUBLIC_PATHS = frozenset({b"/v2/health/live", b"/v2/health/ready"})  # for load balancers' checks
DEPLOYMENT_HEADER = b"x-steady-deployment"


class UpstreamReplica:
    """One replica incarnation as this gateway sees it."""

    __slots__ = ("endpoint", "generation", "id", "inflight", "outlier", "pool", "revision")

    def __init__(self, id: str, generation: int, endpoint: str, revision: int = 0) -> None:
        self.id = id
        self.generation = generation
        self.endpoint = endpoint
        self.revision = revision
        self.pool = UpstreamPool(endpoint)
        self.inflight = 0
        self.outlier = OutlierState()


class ServiceRuntime:
    def __init__(self, name: str, route: ServiceRoute, replicas: list[UpstreamReplica]) -> None:
        self.name = name
        self.route = route
        self.replicas = replicas
        self.balancer: Balancer = make_balancer(route.policy)
        self.budget = RetryBudget(ratio=route.retry_budget_ratio)
        self.idempotent = {h: r.idempotent for h, r in route.handlers.items()}
        self.key_of = _key_extractor(route.hash_key) if route.policy == "consistent_hash" else None


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


class Gateway:
    def __init__(
        self,
        gateway_id: str,
        outlier_policy: OutlierPolicy | None = None,
        clock: Clock = time.monotonic,
        refresh: Callable[[], bool] = lambda: False,
    ) -> None:
        self.gateway_id = gateway_id
        # Re-reads the routing table now; called before answering "no replica",
        # so a replica the controller already reports ready is never refused.
        self.refresh = refresh
        self.outlier_policy = outlier_policy or OutlierPolicy()
        self.clock = clock
        self.table = RoutingTable()
        self.services: dict[str, ServiceRuntime] = {}
        self.inflight = 0
        self.requests = 0
        self._ids = itertools.count(1)
        # Recent ejections, reported through the admin endpoint; the controller
        # turns them into events (it stays the only writer of the state DB).
        self.ejections: deque[dict[str, Any]] = deque(maxlen=64)
        self._ejection_seq = itertools.count(1)
        # Refused calls, reported the same way; the controller writes them to the audit log.
        self.auth_failures: deque[dict[str, Any]] = deque(maxlen=256)
        self._auth_seq = itertools.count(1)
        self.tokens: dict[str, TokenRecord] = {}
        self._rng = random.Random()
        self._buckets: dict[str, TokenBucket] = {}
        self._id_prefix = f"{gateway_id}-{os.urandom(4).hex()}-"

    # --- routing table -------------------------------------------------------
    def apply_table(self, table: RoutingTable) -> None:
        known = {r.endpoint: r for s in self.services.values() for r in s.replicas}
        services: dict[str, ServiceRuntime] = {}
        for name, route in table.services.items():
            replicas = [known.pop(r.endpoint) if r.endpoint in known
                        else UpstreamReplica(r.id, r.generation, r.endpoint, r.revision) for r in route.replicas]
            old = self.services.get(name)
            runtime = ServiceRuntime(name, route, replicas)
            if old is not None and old.route.policy == route.policy:
                runtime.balancer, runtime.budget = old.balancer, old.budget
            services[name] = runtime
        for gone in known.values():
            gone.pool.close()  # in-flight requests finish; idle connections go
        self.services = services
        self.table = table
        self.tokens = {i: TokenRecord(i, t.name, t.role, t.digest, t.rate_per_s, t.burst)
                       for i, t in table.tokens.items()}
        self._buckets = {i: b for i, b in self._buckets.items() if i in self.tokens}

    # --- request path ------------------------------------------------------------
    def _resolve(self, request: Request) -> tuple[ServiceRuntime | None, str]:
        path = request.path.decode("utf-8", "replace").strip("/")
        chosen = request.header(DEPLOYMENT_HEADER)
        if chosen is not None:  # the header names the deployment; the path is the handler
            return self.services.get(chosen.decode("utf-8", "replace")), path
        default = self.table.default_service
        if default is not None and default in self.services and "/" not in path:
            return self.services[default], path
        service, _, handler = path.partition("/")
        return self.services.get(service), handler

    def _resolve_v2(self, request: Request) -> tuple[ServiceRuntime | None, str, Answer | None]:
        ready = {name: bool(rt.replicas) for name, rt in self.services.items()}
        decision = route_v2(request.path.decode("utf-8", "replace").strip("/"), ready)
        if isinstance(decision, Answer):
            return None, "", decision
        service = self.services[decision.service]
        return service, service.route.v2_handler or "", None

    def _choose(self, service: ServiceRuntime, key: bytes | None, tried: list[UpstreamReplica], now: float) -> UpstreamReplica | None:
        replicas = service.replicas
        mask = routable([r.outlier.is_ejected(now) for r in replicas], self.outlier_policy)
        candidates = [r for r, ok in zip(replicas, mask, strict=True) if ok and r not in tried]
        if not candidates:
            return None
        canary = service.route.canary
        if canary is not None:
            candidates = canary_split(candidates, [r.revision for r in candidates], canary.revision,
                                      canary.percent, self._rng.random() * 100)  # type: ignore[assignment]
        return service.balancer.pick(candidates, key)  # type: ignore[return-value]

    def _record_failure(self, service: ServiceRuntime, replica: UpstreamReplica, now: float, error: UpstreamError) -> None:
        ejected_now = sum(r.outlier.is_ejected(now) for r in service.replicas)
        replica.outlier, ejected = on_failure(
            replica.outlier, now, self.outlier_policy, ejected_now, len(service.replicas))
        if ejected:
            self.ejections.append({
                "seq": next(self._ejection_seq), "ts": time.time(), "service": service.name,
                "replica": replica.id, "generation": replica.generation,
                "period_s": round(replica.outlier.ejected_until - now, 3),
                "times": replica.outlier.times_ejected, "last_error": str(error),
            })

    async def handle(self, request: Request) -> bytes:
        self.requests += 1
        self.inflight += 1
        try:
            return await self._proxy(request)
        finally:
            self.inflight -= 1

    async def _proxy(self, request: Request) -> bytes:
        request_id = request.header(b"x-request-id")
        if request_id is None:
            request_id = (self._id_prefix + str(next(self._ids))).encode()
            request.headers.append((b"x-request-id", request_id))
        if self.table.auth_required and request.path not in _PUBLIC_PATHS:
            refused = self._authorize(request, request_id)
            if refused is not None:
                return refused
        if request.path.startswith(b"/v2"):
            service, handler, answer = self._resolve_v2(request)
            if answer is not None:
                return json_response(answer.status, answer.body, extra_headers=b"x-request-id: " + request_id
                                     + b"\r\n" + _NO_REPLICA_HEADER)
        else:
            service, handler = self._resolve(request)
        if service is None:
            return self._error(404, request_id, f"no service for path {request.path.decode(errors='replace')!r}"
                               f"; services: {', '.join(sorted(self.services)) or 'none yet'}")
        # Replicas serve /<handler>; V2 paths go through as they are.
        upstream_url = request.url if _is_v2(request) else _handler_url(request, handler)
        data = _encode_upstream(request, upstream_url)
        idempotent = service.idempotent.get(handler, True)
        key = service.key_of(request) if service.key_of is not None else None
        now = self.clock()
        service.budget.record_request(now)
        tried: list[UpstreamReplica] = []
        refreshed = False
        while True:
            replica = self._choose(service, key, tried, now)
            if replica is None and not tried and not refreshed and self.refresh():
                refreshed = True
                service = self.services.get(service.name, service)
                continue
            if replica is None:
                if tried:
                    return self._error(502, request_id, f"all {len(tried)} tried replicas of"
                                       f" {service.name!r} failed", attempts=len(tried))
                return self._error(503, request_id, f"no ready replica for service {service.name!r}",
                                   extra=b"retry-after: 1\r\n")
            tried.append(replica)
            replica.inflight += 1
            try:
                response = await replica.pool.request(data, service.route.timeout_s)
            except UpstreamError as err:
                now = self.clock()
                self._record_failure(service, replica, now, err)
                decision = decide_retry(err, len(tried), service.route.max_attempts, idempotent,
                                        service.budget.can_retry(now))
                if decision.retry:
                    service.budget.record_retry(now)
                    continue
                return self._upstream_error(err, replica, request_id, decision.reason, len(tried))
            finally:
                replica.inflight -= 1
            replica.outlier = on_success(replica.outlier)
            return response.raw

    def _authorize(self, request: Request, request_id: bytes) -> bytes | None:
        """None if the call may proceed; else the 401/403/429 answer."""
        verdict = check(request.header(b"authorization"), self.tokens, Action.INVOKE)
        if verdict.status != 200:
            self.auth_failures.append({
                "seq": next(self._auth_seq), "ts": time.time(), "status": verdict.status,
                "actor": verdict.token.name if verdict.token else "-", "reason": verdict.reason,
                "target": request.path.decode("utf-8", "replace")[:200], "source": request.peer,
            })
            extra = b"www-authenticate: Bearer\r\n" if verdict.status == 401 else b""
            return self._error(verdict.status, request_id, verdict.reason, extra=extra)
        token = verdict.token
        if token is not None and token.rate_per_s:
            bucket = self._buckets.get(token.id)
            now = self.clock()
            if bucket is None:
                bucket = self._buckets[token.id] = TokenBucket(token.rate_per_s, token.burst or 1, now)
            wait_s = bucket.take(now)
            if wait_s > 0:
                return self._error(429, request_id, f"rate limit of token {token.name!r} exceeded",
                                   extra=b"retry-after: %d\r\n" % math.ceil(wait_s))
        return None

    def _upstream_error(self, err: UpstreamError, replica: UpstreamReplica, request_id: bytes, reason: str, attempts: int) -> bytes:
        status = 504 if isinstance(err, UpstreamTimeout) else 503 if isinstance(err, UpstreamDraining) else 502
        return self._error(status, request_id, f"replica {replica.id}: {err}", reason=reason,
                           attempts=attempts, replica=replica.id)

    def _error(self, status: int, request_id: bytes, message: str, extra: bytes = b"",
               replica: str | None = None, **details: object) -> bytes:
        replica_header = _NO_REPLICA_HEADER if replica is None else b"x-steady-replica: %s\r\n" % replica.encode()
        body = {"error": message, "request_id": request_id.decode(), **details}
        if replica is not None:
            body["replica"] = replica
        return json_response(status, body, extra_headers=b"x-request-id: " + request_id + b"\r\n"
                             + replica_header + extra)

    def stats(self) -> dict[str, object]:
        return {"gateway": self.gateway_id, "inflight": self.inflight, "requests": self.requests,
                "table_version": self.table.version,
                "replicas": {s: [r.id for r in rt.replicas] for s, rt in self.services.items()},
                "ejections": list(self.ejections), "auth_failures": list(self.auth_failures)}


def _is_v2(request: Request) -> bool:
    return request.path.startswith(b"/v2")


def _handler_url(request: Request, handler: str) -> bytes:
    _, sep, query = request.url.partition(b"?")
    return b"/" + handler.encode() + sep + query


def _encode_upstream(request: Request, url: bytes) -> bytes:
    parts = [request.method, b" ", url, b" HTTP/1.1\r\n"]
    for name, value in request.headers:
        if name not in _HOP_BY_HOP:
            parts += (name, b": ", value, b"\r\n")
    parts.append(b"content-length: %d\r\n\r\n" % len(request.body))
    parts.append(request.body)
    return b"".join(parts)
