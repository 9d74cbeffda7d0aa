"""Passive outlier ejection: replicas that keep failing leave rotation for a while.

Envoy's consecutive-5xx model: a 5xx answer, a timeout or a transport failure
is a failure; any other answer resets the count. Pure state transitions on
``OutlierState``; the gateway owns one per replica incarnation and passes
``now`` in. When too few replicas remain routable the gateway panics and
routes to all of them: a deployment whose every replica fails still answers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class OutlierPolicy:
    consecutive_failures: int = 5
    base_ejection_s: float = 5.0
    max_ejection_s: float = 60.0
    max_ejected_percent: float = 100.0  # never eject more than this share (one may always go)
    panic_threshold_percent: float = 50.0  # below this share of routable replicas, route to all


@dataclass(frozen=True)
class OutlierState:
    consecutive_failures: int = 0
    times_ejected: int = 0
    ejected_until: float = 0.0

    def is_ejected(self, now: float) -> bool:
        return now < self.ejected_until


def on_success(state: OutlierState) -> OutlierState:
    return state if state.consecutive_failures == 0 else replace(state, consecutive_failures=0)


def on_failure(
    state: OutlierState, now: float, policy: OutlierPolicy, ejected_now: int, total: int
) -> tuple[OutlierState, bool]:
    """Record a failure; returns the new state and whether it was just ejected.

    The ejection period doubles each time the same incarnation is ejected again.
    An ejection that would put more than ``max_ejected_percent`` of the
    replicas out is refused (the replica keeps its failure count), except that
    one replica may always be ejected, as in Envoy.
    """
    failures = state.consecutive_failures + 1
    if state.is_ejected(now) or failures < policy.consecutive_failures:
        return replace(state, consecutive_failures=failures), False
    over_limit = 100.0 * (ejected_now + 1) / total > policy.max_ejected_percent if total else True
    if over_limit and ejected_now > 0:
        return replace(state, consecutive_failures=failures), False
    period = min(policy.base_ejection_s * 2**state.times_ejected, policy.max_ejection_s)
    return OutlierState(0, state.times_ejected + 1, now + period), True


def routable(ejected: list[bool], policy: OutlierPolicy) -> list[bool]:
    """Which replicas take traffic; in panic (too few healthy) all of them do."""
    total = len(ejected)
    healthy = total - sum(ejected)
    if total and 100.0 * healthy / total < policy.panic_threshold_percent:
        return [True] * total
    return [not e for e in ejected]
