"""What a deployment needs next, as a pure function of a snapshot of its replicas.

One planner covers the steady state (keep N replicas of the active revision),
scaling, and rolling updates: when replicas of an older revision are still up,
the new revision is rolled in one surge replica at a time and an old replica
is retired only once a new one is ready (never below N ready). The first new
replica is a canary: old replicas are kept until it has served through the bake
period with an error rate under the limit. A revision whose replica is not
ready by the deadline, crash-loops, or fails its bake is rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import RolloutSettings
from .supervision import ProcState


@dataclass(frozen=True)
class SlotView:
    id: str
    index: int
    revision: int
    state: ProcState
    started_at: float  # when its current process started (monotonic)
    ready_since: float | None
    requests: int = 0
    errors: int = 0


@dataclass(frozen=True)
class DeploymentView:
    revision: int  # the active (desired) revision
    replicas: int  # desired count
    slots: tuple[SlotView, ...]  # live slots: not retiring, not stopped
    now: float
    rollout: RolloutSettings
    previous_revision: int | None  # where a rollback goes


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


Action = AddSlot | Retire | RollBack


def _retire_order(slots: list[SlotView]) -> list[SlotView]:
    """Not-ready replicas go first, then the newest index."""
    return sorted(slots, key=lambda s: (s.state == ProcState.READY, -s.index))


def _failure(view: DeploymentView, new: list[SlotView]) -> str | None:
    settings = view.rollout
    for s in new:
        if s.state == ProcState.CRASH_LOOP:
            return f"replica {s.id} of revision {view.revision} is crash-looping"
        if s.ready_since is None and view.now - s.started_at > settings.ready_deadline_s:
            return f"replica {s.id} of revision {view.revision} not ready within {settings.ready_deadline_s:g}s"
    requests = sum(s.requests for s in new)
    errors = sum(s.errors for s in new)
    if requests >= settings.min_requests and errors / requests > settings.max_error_rate:
        return (f"revision {view.revision} failed {errors} of {requests} requests"
                f" ({errors / requests:.0%} > {settings.max_error_rate:.0%})")
    return None


def plan(view: DeploymentView) -> list[Action]:
    live = list(view.slots)
    new = [s for s in live if s.revision == view.revision]
    old = [s for s in live if s.revision != view.revision]
    if not old:  # steady state: scale to the desired count
        if len(new) < view.replicas:
            return [AddSlot(view.revision) for _ in range(view.replicas - len(new))]
        return [Retire(s.id) for s in _retire_order(new)[: len(new) - view.replicas]]

    # A rolling update is under way.
    if view.previous_revision is not None:
        reason = _failure(view, new)
        if reason is not None:
            return [RollBack(view.previous_revision, reason)]
    new_ready = [s for s in new if s.state == ProcState.READY]
    canary_baked = any(
        s.ready_since is not None and view.now - s.ready_since >= view.rollout.bake_s for s in new_ready)
    actions: list[Action] = []
    starting = [s for s in new if s.state != ProcState.READY]
    # One canary first; more new replicas only once it has baked.
    if len(new) < view.replicas and len(starting) < view.rollout.max_surge and (not new or canary_baked):
        actions.append(AddSlot(view.revision))
    if canary_baked:
        excess = len(old) + len(new_ready) - view.replicas
        actions += [Retire(s.id) for s in _retire_order(old)[:max(0, excess)]]
    return actions
