"""Load-balancing policies, as pure functions over candidates."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest

from steadyserve.gateway.balancing import ConsistentHash, LeastRequest, RoundRobin


@dataclass
class R:
    id: str
    inflight: int = 0


def replicas(n: int) -> list[R]:
    return [R(f"r{i}") for i in range(n)]


def test_round_robin_spreads_evenly():
    rs, balancer = replicas(3), RoundRobin()
    picks = Counter(balancer.pick(rs, None).id for _ in range(300))
    assert picks == {"r0": 100, "r1": 100, "r2": 100}


def test_p2c_always_prefers_the_less_loaded_of_two():
    busy, idle = R("busy", inflight=5), R("idle", inflight=0)
    balancer = LeastRequest(random.Random(1))
    assert {balancer.pick([busy, idle], None).id for _ in range(100)} == {"idle"}


def test_p2c_never_picks_the_most_loaded_of_many():
    rs = [R("a", 1), R("b", 2), R("c", 9)]
    balancer = LeastRequest(random.Random(2))
    picks = Counter(balancer.pick(rs, None).id for _ in range(1000))
    assert picks["c"] == 0 and picks["a"] > picks["b"] > 0


def test_p2c_spreads_equal_load():
    balancer = LeastRequest(random.Random(3))
    picks = Counter(balancer.pick(replicas(4), None).id for _ in range(4000))
    assert min(picks.values()) > 700


def keys(n: int) -> list[bytes]:
    return [f"user-{i}".encode() for i in range(n)]


def test_consistent_hash_is_stable_for_a_key():
    ch = ConsistentHash()
    rs = replicas(4)
    assert len({ch.pick(rs, b"user-42").id for _ in range(50)}) == 1


@pytest.mark.parametrize("n", [3, 4, 8])
def test_adding_a_replica_moves_about_one_nth_of_keys(n):
    ch = ConsistentHash()
    before = {k: ch.pick(replicas(n), k).id for k in keys(4000)}
    after = {k: ch.pick(replicas(n + 1), k).id for k in keys(4000)}
    moved = [k for k in before if before[k] != after[k]]
    assert all(after[k] == f"r{n}" for k in moved)  # keys only move to the newcomer
    assert 0.5 / (n + 1) < len(moved) / 4000 < 1.6 / (n + 1)


def test_removing_a_replica_moves_only_its_keys():
    ch = ConsistentHash()
    before = {k: ch.pick(replicas(5), k).id for k in keys(4000)}
    survivors = [r for r in replicas(5) if r.id != "r2"]
    after = {k: ch.pick(survivors, k).id for k in keys(4000)}
    moved = {k for k in before if before[k] != after[k]}
    assert moved == {k for k in before if before[k] == "r2"}


def test_bounded_load_spills_a_hot_key():
    ch = ConsistentHash(load_factor=1.25)
    rs = replicas(4)
    owner = ch.pick(rs, b"hot").id
    for r in rs:  # the owner is far above average load
        r.inflight = 10 if r.id == owner else 1
    spilled = ch.pick(rs, b"hot")
    assert spilled.id != owner
    cap = -(-1.25 * (sum(r.inflight for r in rs) + 1) // 4)
    assert spilled.inflight + 1 <= cap


def test_bounded_load_keeps_the_owner_under_the_cap():
    ch = ConsistentHash(load_factor=1.25)
    rs = replicas(4)
    owner = ch.pick(rs, b"k").id
    for r in rs:
        r.inflight = 2
    assert ch.pick(rs, b"k").id == owner


def test_consistent_hash_without_key_falls_back_to_p2c():
    ch = ConsistentHash(rng=random.Random(4))
    rs = [R("a", 0), R("b", 7)]
    assert {ch.pick(rs, None).id for _ in range(50)} == {"a"}


@pytest.mark.parametrize(
    ("spec", "headers", "body", "key"),
    [
        ("header:X-User", [(b"x-user", b"alice")], b"{}", b"alice"),
        ("header:X-User", [], b"{}", None),
        ("json:user_id", [], b'{"user_id": 42}', b"42"),
        ("json:user_id", [], b"not json", None),
        ("json:user_id", [], b"[1, 2]", None),
    ],
)
def test_hash_key_from_header_or_json_field(spec, headers, body, key):
    from steadyserve.gateway.runtime import _key_extractor
    from steadyserve.wire.http11 import Request

    extract = _key_extractor(spec)
    assert extract is not None
    assert extract(Request(b"POST", b"/f", headers, body, True)) == key


def test_canary_split_sends_its_share_to_the_new_revision():
    from steadyserve.gateway.balancing import canary_split

    rs = [R("old-a"), R("old-b"), R("new")]
    revisions = [1, 1, 2]
    assert [c.id for c in canary_split(rs, revisions, 2, 10.0, roll=5.0)] == ["new"]
    assert [c.id for c in canary_split(rs, revisions, 2, 10.0, roll=50.0)] == ["old-a", "old-b"]
    # No canary replica routable (e.g. ejected): everything goes to the others.
    assert [c.id for c in canary_split(rs[:2], [1, 1], 2, 10.0, roll=5.0)] == ["old-a", "old-b"]
