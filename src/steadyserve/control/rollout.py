"""What a deployment needs next, as a pure function of a snapshot of its replicas.

One planner covers the steady state (keep N replicas of the active revision),
scaling, replacement and rolling updates:

- A replica marked for replacement (it asked, or outgrew its memory) no longer
  counts towards N: a successor starts at once, and the marked one is retired
  once enough others are ready (or at once if it is out of rotation anyway).
- When replicas of an older revision are still up, the new revision is rolled
  in one surge replica at a time and an old replica is retired only once a new
  one is ready (never below N ready). The first new replica is a canary: old
  replicas are kept until the bake ends, and the bake ends only when both
  ``bake_s`` have passed and the gateways have seen ``min_requests`` calls to
  the new revision, or at ``max_bake_s`` by the ``low_traffic`` policy.
- A revision is judged on what the gateways saw of it (5xx, timeouts and
  transport failures; optionally its p99 latency against the old revision's):
  one that fails, is not ready by the deadline, or crash-loops is rolled back.

``GatewayLedger`` turns the gateways' cumulative per-process counters into
totals per (deployment, revision).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..gateway.outcomes import quantile_s
from .spec import RolloutSettings
from .supervision import ProcState


@dataclass(frozen=True)
class Outcomes:
    """Calls the gateways sent to one revision: answered, failed, and their latency histogram."""

    requests: int = 0
    failures: int = 0
    latency_counts: tuple[int, ...] = ()

    def __add__(self, other: Outcomes) -> Outcomes:
        return Outcomes(self.requests + other.requests, self.failures + other.failures,
                        _combine(self.latency_counts, other.latency_counts, 1))

    def __sub__(self, other: Outcomes) -> Outcomes:
        return Outcomes(self.requests - other.requests, self.failures - other.failures,
                        _combine(self.latency_counts, other.latency_counts, -1))

    def covers(self, earlier: Outcomes) -> bool:
        """Whether these counters can have grown from ``earlier`` (none went down)."""
        return (self.requests >= earlier.requests and self.failures >= earlier.failures
                and all(a >= b for a, b in zip(self.latency_counts, earlier.latency_counts, strict=False)))

    def p99_s(self) -> float | None:
        return quantile_s(self.latency_counts, 0.99) if self.latency_counts else None


def _combine(a: tuple[int, ...], b: tuple[int, ...], sign: int) -> tuple[int, ...]:
    size = max(len(a), len(b))
    a, b = a + (0,) * (size - len(a)), b + (0,) * (size - len(b))
    return tuple(x + sign * y for x, y in zip(a, b, strict=True))


RevisionKey = tuple[str, int]  # (deployment, revision)


def parse_revisions(stats: Mapping[str, Any]) -> dict[RevisionKey, Outcomes]:
    """A gateway's ``"revisions"`` report; malformed entries are skipped."""
    found: dict[RevisionKey, Outcomes] = {}
    by_deployment = stats.get("revisions")
    if not isinstance(by_deployment, dict):
        return found
    for deployment, by_revision in by_deployment.items():
        if not isinstance(by_revision, dict):
            continue
        for revision, counts in by_revision.items():
            try:
                found[(str(deployment), int(revision))] = Outcomes(
                    int(counts["requests"]), int(counts["failures"]),
                    tuple(int(c) for c in counts.get("latency_counts", ())))
            except (TypeError, ValueError, KeyError, AttributeError):
                continue
    return found


class GatewayLedger:
    """Totals per (deployment, revision), summed from each gateway process's cumulative counters.

    Each gateway slot reports counters for the life of its process (``instance``).
    A new instance, or a counter that went down, means a new process that started
    from zero: all of its counts are new.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, dict[RevisionKey, Outcomes]]] = {}
        self._totals: dict[RevisionKey, Outcomes] = {}

    def observe(self, gateway_id: str, stats: Mapping[str, Any]) -> None:
        if "revisions" not in stats:
            return
        instance = str(stats.get("instance", ""))
        current = parse_revisions(stats)
        last_instance, last = self._last.get(gateway_id, ("", {}))
        same_process = bool(instance) and instance == last_instance
        restarted = not same_process or any(
            not current.get(key, Outcomes()).covers(before) for key, before in last.items())
        for key, counts in current.items():
            delta = counts if restarted else counts - last.get(key, Outcomes())
            self._totals[key] = self._totals.get(key, Outcomes()) + delta
        self._last[gateway_id] = (instance, current)

    def total(self, deployment: str, revision: int) -> Outcomes:
        return self._totals.get((deployment, revision), Outcomes())


@dataclass(frozen=True)
class SlotView:
    id: str
    index: int
    revision: int
    state: ProcState
    started_at: float  # when its current process started (monotonic)
    ready_since: float | None
    replace_reason: str | None = None  # marked for replacement: a successor takes its place
    replacing_since: float = 0.0
    inflight: int = 0  # calls it was working on at the last probe


@dataclass(frozen=True)
class DeploymentView:
    revision: int  # the active (desired) revision
    replicas: int  # desired count
    slots: tuple[SlotView, ...]  # live slots: not retiring, not stopped
    now: float
    rollout: RolloutSettings
    previous_revision: int | None  # where a rollback goes
    # What the gateways saw of the new and the previous revision since the rollout began.
    new_outcomes: Outcomes = Outcomes()
    old_outcomes: Outcomes = Outcomes()
    baked: bool = False  # the bake of this rollout has ended (Promote was applied)
    # When a replica of the new revision first became ready in this rollout: replacing a canary
    # (e.g. a stuck one) must not restart the bake, or a failing revision would never be judged.
    bake_since: float | None = None
    replace_timeout_s: float = 120.0  # a marked replica is retired by then even without a ready successor


@dataclass(frozen=True)
class AddSlot:
    revision: int


@dataclass(frozen=True)
class Retire:
    slot_id: str


@dataclass(frozen=True)
class RollBack:
    to_revision: int
    reason: str


@dataclass(frozen=True)
class Promote:
    """The bake is over: old replicas may now be replaced."""

    reason: str


Action = AddSlot | Retire | RollBack | Promote


def _retire_order(slots: list[SlotView]) -> list[SlotView]:
    """Not-ready replicas go first, then the least busy (its calls finish soonest), then the newest."""
    return sorted(slots, key=lambda s: (s.state == ProcState.READY, s.inflight, -s.index))


def _failure(view: DeploymentView, new: list[SlotView]) -> str | None:
    settings = view.rollout
    for s in new:
        if s.state == ProcState.CRASH_LOOP:
            return f"replica {s.id} of revision {view.revision} is crash-looping"
        if s.ready_since is None and view.now - s.started_at > settings.ready_deadline_s:
            return f"replica {s.id} of revision {view.revision} not ready within {settings.ready_deadline_s:g}s"
    seen = view.new_outcomes
    allowed = settings.max_error_rate * settings.min_requests
    if seen.requests < settings.min_requests and seen.failures > allowed:
        # More failures than a full sample of min_requests calls could hold: the verdict cannot change.
        return (f"revision {view.revision} failed {seen.failures} of {seen.requests} calls seen by the gateways,"
                f" more than max_error_rate allows in min_requests ({settings.min_requests}) calls")
    if seen.requests >= settings.min_requests and seen.failures / seen.requests > settings.max_error_rate:
        return (f"revision {view.revision} failed {seen.failures} of {seen.requests} calls seen by the gateways"
                f" ({seen.failures / seen.requests:.0%} > {settings.max_error_rate:.0%};"
                " 5xx, timeouts and transport failures count)")
    ratio = settings.max_p99_ratio
    old = view.old_outcomes
    if ratio is not None and seen.requests >= settings.min_requests and old.requests >= settings.min_requests:
        new_p99, old_p99 = seen.p99_s(), old.p99_s()
        if new_p99 is not None and old_p99 is not None and new_p99 > ratio * old_p99:
            return (f"revision {view.revision} p99 latency (<= {new_p99:g}s) is over {ratio:g}x that of"
                    f" revision {view.previous_revision} (<= {old_p99:g}s)")
    return None


def _bake(view: DeploymentView, new_ready: list[SlotView]) -> Promote | RollBack | None:
    """Whether the canary's bake ends now, and how."""
    started = [s.ready_since for s in new_ready if s.ready_since is not None]
    if view.bake_since is not None:
        started.append(view.bake_since)
    if not started:
        return None
    settings, seen = view.rollout, view.new_outcomes
    baked_s = view.now - min(started)
    if baked_s >= settings.bake_s and seen.requests >= settings.min_requests:
        return Promote(f"revision {view.revision} baked {baked_s:.0f}s; the gateways saw {seen.requests} calls,"
                       f" {seen.failures} failed")
    limit_s = max(settings.max_bake_s, settings.bake_s)
    if baked_s < limit_s:
        return None
    why = (f"too little traffic to judge revision {view.revision}: the gateways saw {seen.requests} of"
           f" min_requests {settings.min_requests} calls in max_bake_s {limit_s:g}s")
    if view.previous_revision is not None and seen.requests and seen.failures / seen.requests > settings.max_error_rate:
        return RollBack(view.previous_revision, f"{why}, and {seen.failures} of them failed")
    if settings.low_traffic == "rollback" and view.previous_revision is not None:
        return RollBack(view.previous_revision, f"{why} (rollout.low_traffic: rollback)")
    return Promote(f"{why}; promoting it (rollout.low_traffic: promote)")


def _replacements(view: DeploymentView, marked: list[SlotView], staying: list[SlotView]) -> list[Action]:
    """Retire marked replicas once others can carry the desired count, or serve nothing and have successors."""
    successors = len(staying) >= view.replicas  # started (first) by an earlier plan
    retire = [s for s in marked if (s.state != ProcState.READY and successors)
              or view.now - s.replacing_since >= view.replace_timeout_s]
    serving = sorted((s for s in marked if s not in retire), key=lambda s: s.replacing_since)
    ready_others = sum(s.state == ProcState.READY for s in staying)
    covered = max(0, ready_others + len(serving) - view.replicas)
    return [Retire(s.id) for s in retire + serving[:covered]]


def plan(view: DeploymentView) -> list[Action]:
    marked = [s for s in view.slots if s.replace_reason is not None]
    live = [s for s in view.slots if s.replace_reason is None]
    return _plan_revisions(view, live) + _replacements(view, marked, live)


def _plan_revisions(view: DeploymentView, live: list[SlotView]) -> list[Action]:
    new = [s for s in live if s.revision == view.revision]
    old = [s for s in live if s.revision != view.revision]
    if not old:  # steady state: scale to the desired count
        if len(new) < view.replicas:
            return [AddSlot(view.revision) for _ in range(view.replicas - len(new))]
        return [Retire(s.id) for s in _retire_order(new)[: len(new) - view.replicas]]

    # A rolling update is under way.
    actions: list[Action] = []
    if view.previous_revision is not None:
        reason = _failure(view, new)
        if reason is not None:
            return [RollBack(view.previous_revision, reason)]
    new_ready = [s for s in new if s.state == ProcState.READY]
    baked = view.baked or view.previous_revision is None
    if not baked:
        ended = _bake(view, new_ready)
        if isinstance(ended, RollBack):
            return [ended]
        if ended is not None:
            actions.append(ended)
            baked = True
    starting = [s for s in new if s.state != ProcState.READY]
    # One canary first; more new replicas only once it has baked.
    if len(new) < view.replicas and len(starting) < view.rollout.max_surge and (not new or baked):
        actions.append(AddSlot(view.revision))
    if baked:
        excess = len(old) + len(new_ready) - view.replicas
        actions += [Retire(s.id) for s in _retire_order(old)[:max(0, excess)]]
    return actions
