"""Load-balancing policies: pure choices over a list of candidate replicas.

Each policy picks one of ``candidates`` (already filtered to ready, not ejected,
not yet tried) given each one's in-flight count as seen by this gateway.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Protocol

from uhashring import HashRing  # type: ignore[import-untyped]


class Candidate(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def inflight(self) -> int: ...


class Balancer(Protocol):
    def pick(self, candidates: Sequence[Candidate], key: bytes | None) -> Candidate: ...


class RoundRobin:
    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Candidate], key: bytes | None) -> Candidate:
        self._next += 1
        return candidates[self._next % len(candidates)]


class LeastRequest:
    """Power of two choices: sample two, take the one with fewer requests in flight."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Candidate], key: bytes | None) -> Candidate:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        i = self._rng.randrange(n)
        j = self._rng.randrange(n - 1)
        if j >= i:
            j += 1
        a, b = candidates[i], candidates[j]
        return b if b.inflight < a.inflight else a


class ConsistentHash:
    """Consistent hashing with bounded loads (Mirrokni et al., 2016).

    A key goes to its owner on a ketama ring unless that replica already holds
    more than ``load_factor`` x the average in-flight load; then to the next
    replica clockwise that does not. Without a key it falls back to P2C.
    """

    def __init__(self, load_factor: float = 1.25, rng: random.Random | None = None) -> None:
        self.load_factor = load_factor
        self._fallback = LeastRequest(rng)
        self._ring: HashRing | None = None
        self._ring_ids: frozenset[str] = frozenset()

    def _ring_for(self, ids: frozenset[str]) -> HashRing:
        if self._ring is None or ids != self._ring_ids:
            self._ring = HashRing(nodes=sorted(ids), hash_fn="ketama")
            self._ring_ids = ids
        return self._ring

    def owner(self, ids: frozenset[str], key: bytes) -> str:
        return str(self._ring_for(ids).get_node(key.decode("utf-8", "replace")))

    def pick(self, candidates: Sequence[Candidate], key: bytes | None) -> Candidate:
        if key is None:
            return self._fallback.pick(candidates, None)
        by_id = {c.id: c for c in candidates}
        ring = self._ring_for(frozenset(by_id))
        total = sum(c.inflight for c in candidates) + 1  # count the request being placed
        cap = math.ceil(self.load_factor * total / len(candidates))
        for node in ring.range(key.decode("utf-8", "replace"), None, True):
            candidate = by_id[node["nodename"]]
            if candidate.inflight + 1 <= cap:
                return candidate
        return min(candidates, key=lambda c: c.inflight)  # unreachable: cap >= average


def canary_split(candidates: Sequence[Candidate], revisions: Sequence[int], canary_revision: int,
                 percent: float, roll: float) -> list[Candidate]:
    """The candidates of the group this call goes to: ``roll`` in [0, 100) below ``percent``
    picks the canary revision. An empty group falls back to all candidates."""
    want_canary = roll < percent
    group = [c for c, r in zip(candidates, revisions, strict=True) if (r == canary_revision) == want_canary]
    return group or list(candidates)


def make_balancer(policy: str) -> Balancer:
    if policy == "round_robin":
        return RoundRobin()
    if policy == "least_request":
        return LeastRequest()
    if policy == "consistent_hash":
        return ConsistentHash()
    raise ValueError(f"unknown load-balancing policy {policy!r}")
