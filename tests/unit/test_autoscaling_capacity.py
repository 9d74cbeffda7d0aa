"""The machine's budget for replicas and how deployments share it (``allocate``), and ``capacity:``."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from steadyserve.autoscaling.capacity import Budget, Claim, Grant, allocate, machine_cpus, machine_memory_mb
from steadyserve.autoscaling.settings import CapacitySpec

ROOMY = Budget(cpus=64, memory_mb=64_000)


def claim(name: str, wanted: int, *, running: int = 0, minimum: int = 0, priority: int = 0, cpus: float = 1.0,
          memory_mb: float = 100.0) -> Claim:
    return Claim(deployment=name, priority=priority, running=running, minimum=minimum, wanted=wanted, cpus=cpus,
                 memory_mb=memory_mb)


def counts(grants: dict[str, Grant]) -> dict[str, int]:
    return {name: grant.replicas for name, grant in grants.items()}


def cores(n: float) -> Budget:
    """A budget of ``n`` one-core replicas (memory to spare)."""
    return Budget(cpus=n, memory_mb=64_000)


def test_everyone_gets_what_they_want_when_it_fits():
    grants = allocate(ROOMY, [claim("a", 3, running=1), claim("b", 5, running=7), claim("c", 0, running=2)])
    assert grants == {"a": Grant(3, False), "b": Grant(5, False), "c": Grant(0, False)}


def test_no_claims_no_grants():
    assert allocate(ROOMY, []) == {}


def test_minimums_are_kept_even_over_the_budget():
    grants = allocate(cores(1), [claim("a", 2, minimum=2), claim("b", 3, minimum=2)])
    assert counts(grants) == {"a": 2, "b": 2}
    assert not grants["a"].limited and grants["b"].limited


def test_a_count_wanted_below_the_minimum_gets_the_minimum():
    assert counts(allocate(ROOMY, [claim("a", 1, running=5, minimum=3)])) == {"a": 3}


@pytest.mark.parametrize(("running", "wanted"), [(4, 4), (4, 6), (6, 6)])
def test_running_replicas_are_never_taken_away_to_make_room(running, wanted):
    # "low" runs more than its share; "high" (a higher priority) wants room: the budget only stops growth.
    grants = allocate(cores(4), [claim("low", wanted, running=running), claim("high", 4, priority=10)])
    assert grants["low"].replicas == running
    assert grants["high"].replicas == 0 and grants["high"].limited


def test_a_deployment_may_shrink_below_what_it_runs():
    assert counts(allocate(cores(1), [claim("a", 2, running=5)])) == {"a": 2}


def test_a_full_machine_keeps_what_runs_and_grows_nothing():
    grants = allocate(cores(3), [claim("a", 5, running=3), claim("b", 5, running=2)])
    assert counts(grants) == {"a": 3, "b": 2}
    assert grants["a"].limited and grants["b"].limited


def test_higher_priorities_get_replicas_first():
    grants = allocate(cores(4), [claim("batch", 4, priority=0), claim("api", 3, priority=5)])
    assert counts(grants) == {"batch": 1, "api": 3}
    assert not grants["api"].limited and grants["batch"].limited


def test_room_a_higher_priority_cannot_use_goes_to_lower_ones():
    grants = allocate(cores(3), [claim("big", 2, priority=5, cpus=4), claim("small", 3, priority=0)])
    assert counts(grants) == {"big": 0, "small": 3}


@pytest.mark.parametrize(("budget", "running", "expected"), [
    (6, {"a": 0, "b": 0}, {"a": 3, "b": 3}),
    (6, {"a": 2, "b": 0}, {"a": 3, "b": 3}),  # the one with fewer catches up first
    (5, {"a": 0, "b": 2}, {"a": 3, "b": 2}),  # level at 2 each; the name breaks the tie for the fifth
    (5, {"a": 4, "b": 0}, {"a": 4, "b": 1}),  # nothing taken from "a" to even them out
])
def test_equal_priorities_share_one_replica_at_a_time_fewest_first(budget, running, expected):
    grants = allocate(cores(budget), [claim(name, 10, running=n) for name, n in running.items()])
    assert counts(grants) == expected


def test_the_name_breaks_ties_whatever_the_claims_order():
    claims = [claim("zeta", 2), claim("alpha", 2)]
    assert counts(allocate(cores(3), claims)) == {"zeta": 1, "alpha": 2}
    assert counts(allocate(cores(3), claims[::-1])) == {"zeta": 1, "alpha": 2}


@pytest.mark.parametrize(("budget", "granted", "short"), [
    (Budget(cpus=2, memory_mb=10_000), 2, "one more needs 1 cores, 0 are free"),
    (Budget(cpus=100, memory_mb=300), 3, "one more needs 100 MiB, 0 MiB are free"),
    (Budget(cpus=0.3, memory_mb=10_000), 1, "one more needs 0.25 cores, 0.05 are free"),
], ids=["cpu-bound", "memory-bound", "fractional-cores"])
def test_cpu_and_memory_both_bound_the_count_and_the_reason_names_what_is_short(budget, granted, short):
    cpus = 0.25 if budget.cpus < 1 else 1.0
    grant = allocate(budget, [claim("digits", 5, cpus=cpus)])["digits"]
    assert (grant.replicas, grant.limited) == (granted, True)
    assert grant.reason == (f"wants 5 replicas, the machine's budget ({budget.describe()} for replicas) allows"
                            f" {granted}: {short}")


def test_the_budget_is_described_in_cores_and_mib():
    assert Budget(cpus=1.5, memory_mb=7000.4).describe() == "1.5 cores, 7000 MiB"


def test_a_grant_that_is_not_limited_has_no_reason():
    assert allocate(ROOMY, [claim("a", 2)])["a"].reason == ""


def test_this_machine_has_cores_and_memory_to_give():
    cpus, memory_mb = machine_cpus(), machine_memory_mb()
    assert 0 < cpus <= (os.cpu_count() or 1)
    assert memory_mb > 0


# --- capacity: in the spec -------------------------------------------------------------------------


def test_the_capacity_defaults_measure_the_machine_and_keep_some_free():
    spec = CapacitySpec()
    assert (spec.cpus, spec.memory_mb, spec.reserve_cpus, spec.reserve_memory_mb, spec.replica_memory_mb) == \
           (None, None, 0.0, 512, 256)


@pytest.mark.parametrize("bad", [{"cpus": 0}, {"memory_mb": 63}, {"reserve_cpus": -1}, {"reserve_memory_mb": -1},
                                 {"replica_memory_mb": 0}, {"cpus": float("inf")}, {"memory": 1024}])
def test_a_capacity_out_of_range_or_unknown_is_rejected(bad):
    with pytest.raises(ValidationError):
        CapacitySpec.model_validate(bad)
