"""One call through the gateway, sans I/O: admit → choose → attempt → retry, eject, record.

``call_flow`` is a generator: it yields the I/O it needs (send to a replica,
wait in the queue, re-read the routing table) and receives what happened, each
outcome stamped with ``now``. Everything else (admission, the deadline, the
balancer, outlier ejection, the adaptive limit, retry decisions, per-revision
outcomes) happens here, so the proxy's loop stays thin and a unit test drives
the whole flow without a socket (httpx's ``Auth.auth_flow`` is the model).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..errors import UpstreamDraining, UpstreamError, UpstreamLost, UpstreamOverloaded, UpstreamTimeout
from .admission import Shed, decide_admission
from .balancing import canary_split
from .concurrency import on_sample
from .outlier import on_failure, on_success, routable
from .retry import decide_retry
from .runtime import ServiceRuntime, UpstreamReplica


@dataclass(frozen=True, slots=True)
class Call:
    key: bytes | None  # for consistent hashing
    idempotent: bool
    started_at: float
    deadline: float  # the whole call, retries included


# --- what the flow asks for -------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    service: ServiceRuntime
    replica: UpstreamReplica
    timeout_s: float  # what is left of the call's deadline


@dataclass(frozen=True, slots=True)
class Wait:
    service: ServiceRuntime  # queue in this deployment's line ...
    until: float  # ... for a free replica, until then at the latest


@dataclass(frozen=True, slots=True)
class Refresh:
    """Re-read the routing table now (a replica may have become ready a moment ago)."""

    service: str


Action = Send | Wait | Refresh


# --- what happened ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Answered:
    status: int
    response: Any  # forwarded as it is
    now: float
    stream: bool = False  # a stream: how it went is known (and recorded for its revision) when it ends


@dataclass(frozen=True, slots=True)
class Failed:
    error: UpstreamError
    now: float
    current: ServiceRuntime | None = None  # the deployment now, if the routing table changed meanwhile


@dataclass(frozen=True, slots=True)
class Woken:
    now: float
    current: ServiceRuntime | None = None  # the deployment now, if the routing table changed meanwhile


@dataclass(frozen=True, slots=True)
class Refreshed:
    service: ServiceRuntime | None  # the deployment's runtime after the re-read
    now: float


Outcome = Answered | Failed | Woken | Refreshed


# --- how the call ends ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Forward:
    response: Any
    replica: UpstreamReplica
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class Refuse:
    status: int
    message: str
    retry_after_s: int | None = None
    replica: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # sent to a replica this many times


Result = Forward | Refuse
Flow = Generator[Action, Outcome, Result]
# (service, replica, what went wrong, ejection period) for the gateway's event feed
OnEjected = Callable[[ServiceRuntime, UpstreamReplica, str, float], None]

_FULL = object()  # every candidate is at its concurrency limit
SATURATED_BACKOFF_S = (0.05, 2.0)  # first and longest pause after a replica refuses as overloaded


def choose(service: ServiceRuntime, key: bytes | None, tried: list[UpstreamReplica], now: float,
           queued: bool, roll: float) -> UpstreamReplica | None | object:
    """A replica with a free slot; None if none is routable; ``_FULL`` if all are busy.

    A call that has not queued yet goes behind calls already queued (first come,
    first served). ``roll`` in [0, 100) decides the canary group.
    """
    replicas = service.replicas
    mask = routable([r.outlier.is_ejected(now) for r in replicas], service.outlier_policy)
    candidates = [r for r, ok in zip(replicas, mask, strict=True) if ok and r not in tried]
    if not candidates:
        return None
    if service.waiters and not queued:
        return _FULL
    free = [r for r in candidates if r.inflight < service.limit_of(r) and r.saturated_until <= now]
    if not free:
        return _FULL
    canary = service.route.canary
    if canary is not None:
        free = canary_split(free, [r.revision for r in free], canary.revision,  # type: ignore[assignment]
                            canary.percent, roll)
    return service.balancer.pick(free, key)


def _failure_text(outcome: Answered | Failed) -> str:
    return f"answered {outcome.status}" if isinstance(outcome, Answered) else str(outcome.error)


def _record(service: ServiceRuntime, replica: UpstreamReplica, outcome: Answered | Failed, latency_s: float,
            inflight_at_send: int, on_ejected: OnEjected) -> None:
    """Outlier state, adaptive limit, latency and the revision's outcomes after one attempt."""
    now = outcome.now
    if isinstance(outcome, Failed) and isinstance(outcome.error, UpstreamOverloaded):
        # Its other callers (other gateways, stuck workers) fill it: leave it alone a while.
        first_s, longest_s = SATURATED_BACKOFF_S
        replica.saturated_until = now + min(longest_s, first_s * 2 ** replica.refusals)
        replica.refusals += 1
        return  # it never ran: says nothing about the replica's health or the revision
    replica.refusals = 0
    if isinstance(outcome, Failed) and isinstance(outcome.error, UpstreamDraining):
        return  # it never ran: says nothing about the replica's health or the revision
    failed = isinstance(outcome, Failed) or outcome.status >= 500
    if not (isinstance(outcome, Answered) and outcome.stream):
        service.outcomes_of(replica.revision).observe(latency_s, failed)
    if isinstance(outcome, Answered):
        service.latency.observe(latency_s)
        if replica.limiter is not None and service.gradient is not None:
            replica.limiter = on_sample(replica.limiter, latency_s, inflight_at_send, now, service.gradient)
    if not failed:
        replica.outlier = on_success(replica.outlier)
        return
    ejected_now = sum(r.outlier.is_ejected(now) for r in service.replicas)
    replica.outlier, ejected = on_failure(replica.outlier, now, service.outlier_policy, ejected_now,
                                          len(service.replicas))
    if ejected:
        on_ejected(service, replica, _failure_text(outcome), replica.outlier.ejected_until - now)


def _give_up(error: UpstreamError, replica: UpstreamReplica, reason: str, attempts: int,
             timeout_s: float) -> Refuse:
    said = str(error)  # a replica's refusal already names it
    what = said if said.startswith(f"replica {replica.id}") else f"replica {replica.id}: {said}"
    if isinstance(error, UpstreamTimeout):
        return Refuse(504, f"replica {replica.id}: no answer within the call's timeout of {timeout_s:g}s",
                      replica=replica.id, details={"reason": reason, "attempts": attempts}, attempts=attempts)
    if isinstance(error, (UpstreamDraining, UpstreamOverloaded)):
        return Refuse(503, what, retry_after_s=1, replica=replica.id,
                      details={"reason": reason, "attempts": attempts}, attempts=attempts)
    return Refuse(502, what, replica=replica.id,
                  details={"reason": reason, "attempts": attempts}, attempts=attempts)


def _cold_refusal(service: ServiceRuntime, call_timeout_s: float | None) -> Refuse:
    """At zero replicas, none ready in time: within the deployment's wait, or the call's own timeout."""
    if call_timeout_s is not None:
        within = f"the call's timeout of {call_timeout_s:g}s"
    else:
        within = f"the {service.route.cold_start_timeout_s or 0.0:g}s cold_start_timeout_s"
    return Refuse(503, f"{service.name!r} is scaled to zero and no replica was ready within {within};"
                  " a call wakes it: retry", retry_after_s=2, details={"cold_start": True})


def call_flow(service: ServiceRuntime, call: Call, on_ejected: OnEjected, roll: float = 0.0) -> Flow:
    now = call.started_at
    timeout_s = call.deadline - call.started_at
    service.budget.record_request(now)
    tried: list[UpstreamReplica] = []
    last: tuple[UpstreamError, UpstreamReplica, str] | None = None
    refreshed = False
    queued_until: float | None = None
    lost = 0  # attempts whose replica dropped the connection mid-call
    cold_until: float | None = None  # waiting for a first replica of a deployment scaled to zero
    cold_by_deadline = False  # the call's own timeout ends that wait before cold_start_timeout_s
    while True:
        remaining_s = call.deadline - now
        if cold_until is not None and now >= cold_until and not service.replicas:
            return _cold_refusal(service, timeout_s if cold_by_deadline else None)
        if remaining_s <= 0:
            return Refuse(504, f"no answer within the call's timeout of {timeout_s:g}s",
                          details={"attempts": len(tried)}, attempts=len(tried))
        pick = choose(service, call.key, tried, now, queued_until is not None, roll)
        if pick is None:
            if last is not None:  # a failover found no other replica: report what went wrong
                return _give_up(*last, attempts=len(tried), timeout_s=timeout_s)
            if not refreshed:
                refreshed = True
                outcome = yield Refresh(service.name)
                assert isinstance(outcome, Refreshed)
                service, now = outcome.service or service, outcome.now
                continue
            cold_start_s = service.route.cold_start_timeout_s
            if cold_start_s is not None and not service.replicas:
                # Scaled to zero: wait in the bounded queue while the first replica starts (the
                # controller sees the queue and wakes the deployment).
                if cold_until is None:
                    if len(service.waiters) >= service.route.admission.max_queued:
                        return Refuse(503, f"overloaded: {service.name!r} is starting from zero and"
                                      f" {len(service.waiters)} calls already wait (max_queued_requests)",
                                      retry_after_s=2, details={"shed": True})
                    cold_until = queued_until = now + min(cold_start_s, remaining_s)
                    cold_by_deadline = remaining_s < cold_start_s
                outcome = yield Wait(service, cold_until)
                assert isinstance(outcome, Woken)
                now, service = outcome.now, outcome.current or service
                continue
            return Refuse(503, f"no ready replica for service {service.name!r}", retry_after_s=1)
        if pick is _FULL:
            if queued_until is None:
                slots = sum(service.limit_of(r) for r in service.replicas)
                admission = service.route.admission
                admitted = decide_admission(now=now, waiting=len(service.waiters), max_queued=admission.max_queued,
                                            queue_timeout_s=admission.queue_timeout_s, remaining_s=remaining_s,
                                            latency_s=service.latency.value_s, slots=slots)
                if isinstance(admitted, Shed):
                    return Refuse(503, f"overloaded: {admitted.reason}", retry_after_s=admitted.retry_after_s,
                                  details={"shed": True})
                queued_until = admitted.until
            elif now >= queued_until:
                return Refuse(503, f"overloaded: no replica of {service.name!r} freed up while the call waited",
                              retry_after_s=1, details={"shed": True})
            outcome = yield Wait(service, queued_until)
            assert isinstance(outcome, Woken)
            now, service = outcome.now, outcome.current or service
            continue

        replica = pick
        assert isinstance(replica, UpstreamReplica)
        tried.append(replica)
        replica.inflight += 1
        inflight_at_send = replica.inflight
        sent_at = now
        try:
            outcome = yield Send(service, replica, remaining_s)
        finally:  # also when the caller goes away and the flow is closed
            replica.inflight -= 1
        assert isinstance(outcome, (Answered, Failed))
        now = outcome.now
        _record(service, replica, outcome, now - sent_at, inflight_at_send, on_ejected)
        if isinstance(outcome, Answered):
            return Forward(outcome.response, replica, len(tried))
        error = outcome.error
        decision = decide_retry(error, len(tried), service.route.max_attempts, call.idempotent,
                                service.budget.can_retry(now), lost)
        if isinstance(error, UpstreamLost):
            lost += 1
        if not decision.retry:
            return _give_up(error, replica, decision.reason, len(tried), timeout_s)
        service.budget.record_retry(now)
        last = (error, replica, decision.reason)
        service = outcome.current or service  # fail over among the replicas routed to now
