"""Which cluster node a new replica goes to (pure): spread a deployment's replicas, respect capacity.

A replica goes to the node holding the fewest replicas of its deployment's revision,
among the live nodes with room for its resources; ties go to the node with the fewest
of the deployment's other replicas (an old revision's, during a rolling update), then
the most CPUs free, then the lowest node id (so the same snapshot always gives the same
answer). Counting the revision first keeps a rollout's new replicas spread once the old
ones are gone. One node's loss then takes at most ceil(replicas / nodes) of them, except
after a rolling update on a full cluster: a surge replica can only go where an old one
has already left, so the new revision may end on fewer nodes (never on one while two
have room); nothing moves running replicas to rebalance.
When no node has room the answer says why, node by node, for the operator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Resources = Mapping[str, float]
_EPSILON = 1e-9


@dataclass(frozen=True)
class NodeView:
    id: str
    address: str
    alive: bool
    total: Resources  # what the node offers (Ray's names: CPU, GPU, memory in bytes, custom ones)
    used: Resources = field(default_factory=dict)  # what our replicas there hold


@dataclass(frozen=True)
class Placed:
    node: NodeView
    reason: str


@dataclass(frozen=True)
class Unplaceable:
    reason: str


def free(node: NodeView) -> dict[str, float]:
    return {name: amount - node.used.get(name, 0.0) for name, amount in node.total.items()}


def fits(need: Resources, node: NodeView) -> bool:
    room = free(node)
    return all(room.get(name, 0.0) + _EPSILON >= amount for name, amount in need.items() if amount > 0)


def place(need: Resources, nodes: Sequence[NodeView], replicas_on: Mapping[str, int],
          others_on: Mapping[str, int] | None = None, avoid: frozenset[str] = frozenset()) -> Placed | Unplaceable:
    """The node for one more replica needing ``need``. ``replicas_on``: node id -> replicas of its
    deployment's revision there; ``others_on``: of the deployment's other revisions; ``avoid``: nodes
    that lose ties (one that just lost a replica may be dying, and Ray may not know yet)."""
    others_on = others_on or {}
    alive = [n for n in nodes if n.alive]
    if not alive:
        return Unplaceable("the Ray cluster has no live node")
    candidates = [n for n in alive if fits(need, n)]
    if not candidates:
        return Unplaceable(f"no Ray node has room for a replica (needs {describe(need)}): "
                           + "; ".join(f"{n.id[:12]} has {describe(free(n), need)} free" for n in alive))
    # Spread first (so one node's loss never takes all), then keep away from a node that may be dying.
    best = min(candidates, key=lambda n: (replicas_on.get(n.id, 0), n.id in avoid, others_on.get(n.id, 0),
                                          -free(n).get("CPU", 0.0), n.id))
    return Placed(best, f"{replicas_on.get(best.id, 0)} of its revision's replicas there before;"
                        f" {describe(free(best), need)} free")


def describe(resources: Resources, only: Resources | None = None) -> str:
    """``CPU 2, memory 512 MiB`` (of the names in ``only``, when given)."""
    names = [n for n in (only if only is not None else resources) if (only is None or only[n] > 0)]
    if not names:
        return "nothing"
    return ", ".join(f"{n} {_amount(n, resources.get(n, 0.0))}" for n in sorted(names))


def _amount(name: str, value: float) -> str:
    if name in ("memory", "object_store_memory"):
        return f"{max(0.0, value) / (1 << 20):.0f} MiB"
    return f"{max(0.0, value):g}"


def replica_needs(cpus: float, gpus: float, memory_mb: int | None, custom: Mapping[str, float]) -> dict[str, float]:
    """A replica's resources in Ray's names."""
    need = {"CPU": cpus, "GPU": gpus, **custom}
    if memory_mb is not None:
        need["memory"] = float(memory_mb) * (1 << 20)
    return {name: amount for name, amount in need.items() if amount > 0}
