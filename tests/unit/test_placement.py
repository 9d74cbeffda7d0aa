"""Where a replica goes on a cluster (placement.place): spread first, capacity always, reasons stated."""

from __future__ import annotations

import pytest

from steadyserve.control.placement import NodeView, Placed, Unplaceable, describe, fits, place, replica_needs

GIB = float(1 << 30)


def node(id_: str, cpu: float = 2.0, used_cpu: float = 0.0, alive: bool = True, **extra: float) -> NodeView:
    return NodeView(id=id_, address="10.0.0.1", alive=alive, total={"CPU": cpu, "memory": 8 * GIB, **extra},
                    used={"CPU": used_cpu} if used_cpu else {})


def test_a_replica_goes_to_the_node_with_fewest_of_its_revision():
    decision = place({"CPU": 1}, [node("a"), node("b"), node("c")], {"a": 1, "b": 0, "c": 1})
    assert isinstance(decision, Placed) and decision.node.id == "b"
    assert "0 of its revision's replicas there before" in decision.reason


def test_replicas_placed_one_by_one_spread_over_every_node_before_doubling_up():
    nodes = [node("a", cpu=4), node("b", cpu=4), node("c", cpu=4)]
    counts: dict[str, int] = {}
    for _ in range(6):
        decision = place({"CPU": 1}, nodes, counts)
        assert isinstance(decision, Placed)
        counts[decision.node.id] = counts.get(decision.node.id, 0) + 1
        nodes = [NodeView(n.id, n.address, n.alive, n.total, {"CPU": float(counts.get(n.id, 0))}) for n in nodes]
    assert counts == {"a": 2, "b": 2, "c": 2}


def test_the_old_revisions_replicas_break_ties_during_a_rollout():
    decision = place({"CPU": 1}, [node("a"), node("b")], {}, {"a": 1, "b": 0})
    assert isinstance(decision, Placed) and decision.node.id == "b"


def test_ties_go_to_the_most_free_cpus_then_the_lowest_id():
    assert place({"CPU": 1}, [node("a", used_cpu=1), node("b")], {}).node.id == "b"  # type: ignore[union-attr]
    assert place({"CPU": 1}, [node("b"), node("a")], {}).node.id == "a"  # type: ignore[union-attr]


def test_a_node_without_room_is_passed_over_even_if_it_has_fewer_replicas():
    decision = place({"CPU": 1}, [node("a", used_cpu=1.5), node("b")], {"b": 3})
    assert isinstance(decision, Placed) and decision.node.id == "b"


def test_dead_nodes_take_nothing():
    decision = place({"CPU": 1}, [node("a", alive=False), node("b")], {})
    assert isinstance(decision, Placed) and decision.node.id == "b"
    assert place({"CPU": 1}, [node("a", alive=False)], {}) == Unplaceable("the Ray cluster has no live node")


def test_a_replica_that_fits_nowhere_is_refused_naming_what_each_node_has_free():
    decision = place({"CPU": 1, "accel": 1}, [node("a" * 20, accel=1, used_cpu=2), node("b")], {})
    assert isinstance(decision, Unplaceable)
    assert decision.reason == ("no Ray node has room for a replica (needs CPU 1, accel 1): "
                               "aaaaaaaaaaaa has CPU 0, accel 1 free; b has CPU 2, accel 0 free")


@pytest.mark.parametrize(("need", "expected"), [
    ({"CPU": 2}, True), ({"CPU": 2.01}, False), ({"GPU": 1}, False), ({"GPU": 0}, True),
    ({"memory": 8 * GIB}, True), ({"memory": 9 * GIB}, False),
])
def test_fits_compares_every_named_resource_with_what_is_free(need, expected):
    assert fits(need, node("a")) is expected


def test_a_replicas_needs_in_rays_names():
    assert replica_needs(1.0, 0.0, None, {}) == {"CPU": 1.0}
    assert replica_needs(0.5, 1.0, 512, {"accel": 2.0}) == {"CPU": 0.5, "GPU": 1.0, "memory": 512.0 * (1 << 20),
                                                            "accel": 2.0}
    assert replica_needs(0.0, 0.0, None, {"accel": 0.0}) == {}


def test_describe_writes_memory_in_mib():
    assert describe({"memory": 512.0 * (1 << 20), "CPU": 1.5}) == "CPU 1.5, memory 512 MiB"
    assert describe({}) == "nothing"


def test_a_node_that_just_lost_a_replica_loses_ties_but_spreading_comes_first():
    nodes = [node("a"), node("b"), node("c")]
    decision = place({"CPU": 0.5}, nodes, {"b": 1, "c": 1}, avoid=frozenset({"a"}))
    assert isinstance(decision, Placed) and decision.node.id == "a"  # the only node without one: spread
    decision = place({"CPU": 0.5}, nodes, {"c": 1}, avoid=frozenset({"a"}))
    assert isinstance(decision, Placed) and decision.node.id == "b"  # a tie with a: not the suspect
