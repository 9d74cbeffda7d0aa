"""``steady deploy --wait``: has a rollout finished, been rolled back, or is it still going? (pure)

Judged from what the control API shows: the deployment (its active revision,
ready replicas, the revision it is rolling out from) and the events recorded
since the deploy began. A rollout that fails is rolled back (event ``rollback``);
where there is none to roll back, a crash-looping replica fails the wait at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Waiting:
    progress: str


@dataclass(frozen=True)
class Done:
    message: str


@dataclass(frozen=True)
class Failed:
    reason: str


Verdict = Waiting | Done | Failed

_TROUBLE = ("exited", "crash_loop", "start_failed", "unhealthy", "error")


def judge(name: str, revision: int, deployment: Mapping[str, Any] | None,
          events: Sequence[Mapping[str, Any]]) -> Verdict:
    """Where the rollout of ``revision`` of ``name`` stands; ``events`` are those since the deploy."""
    mine = [e for e in events if e.get("deployment") == name]
    rolled_back = [e for e in mine if e["type"] == "rollback"]
    if rolled_back:
        return Failed(rolled_back[-1]["message"])
    if deployment is None:
        return Failed(f"deployment {name!r} is gone (deleted meanwhile)")
    if deployment["revision"] != revision:
        return Failed(f"revision {deployment['revision']} replaced revision {revision} meanwhile")
    ready, wanted = deployment["ready"], deployment["replicas"]
    no_rollout = deployment.get("rolling_out_from") is None
    if no_rollout and ready >= wanted:
        return Done(f"revision {revision}: {ready}/{wanted} replicas ready")
    looping = _crash_looping(mine)
    if no_rollout and looping is not None:
        # No earlier revision to roll back to (a first deployment): nothing will end it but the operator.
        return Failed(f"replica {looping['subject']} of revision {revision}: {looping['message']}")
    progress = f"revision {revision}: {ready}/{wanted} replicas ready"
    trouble = [e for e in mine if e["type"] in _TROUBLE]
    if trouble:
        progress += f"; {trouble[-1]['subject']} {trouble[-1]['type']}: {trouble[-1]['message']}"
    return Waiting(progress)


def _crash_looping(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The last ``crash_loop`` event of a replica that has not been ready since, if any."""
    latest: dict[str, Mapping[str, Any]] = {}
    for event in events:
        if event["type"] in ("crash_loop", "ready"):
            latest[event["subject"]] = event
    looping = [e for e in latest.values() if e["type"] == "crash_loop"]
    return looping[-1] if looping else None
