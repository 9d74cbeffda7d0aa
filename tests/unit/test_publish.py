"""Building the routing table from desired and observed state."""

from __future__ import annotations

from steadyserve.control.publish import canary_route, token_routes
from steadyserve.control.spec import RolloutSettings
from steadyserve.gateway.routes import CanaryRoute

CANARY = RolloutSettings(bake_s=10, canary_percent=10)


def test_canary_share_only_while_a_rollout_bakes():
    assert canary_route(2, 1, CANARY, new_ready=True, baked=False) == CanaryRoute(revision=2, percent=10)
    assert canary_route(2, 1, CANARY, new_ready=True, baked=True) is None  # baked
    assert canary_route(2, None, CANARY, new_ready=True, baked=False) is None  # no rollout
    assert canary_route(2, 1, CANARY, new_ready=False, baked=False) is None  # nothing ready yet
    assert canary_route(2, 1, RolloutSettings(), new_ready=True, baked=False) is None  # not configured


def test_each_gateway_enforces_its_share_of_the_admission_limits():
    from pathlib import Path

    from steadyserve.control.config import DeploymentConfig
    from steadyserve.control.publish import admission_route
    from steadyserve.control.spec import DeploymentSpec

    spec = DeploymentSpec(service="x", admission={"max_ongoing_requests": 9, "max_queued_requests": 5,
                                                  "adaptive": True})
    dep = DeploymentConfig(name="d", target=str(Path("x.py")) + ":X", spec=spec, handlers_idempotent={})
    route = admission_route(dep, gateway_processes=2)
    assert (route.max_ongoing_per_replica, route.max_queued, route.adaptive) == (5, 3, True)
    batched = dep.model_copy(update={"spec": DeploymentSpec(service="x"), "max_batch_size": 32})
    assert admission_route(batched, gateway_processes=1).max_ongoing_per_replica == 64


def test_token_routes_carry_the_whole_rate_limit_not_a_share_per_gateway_process():
    routes = token_routes([{"id": "a1", "name": "n", "role": "invoker", "digest": "d", "rate_per_s": 10.0,
                            "burst": 3}, {"id": "b2", "name": "m", "role": "admin", "digest": "e",
                                          "rate_per_s": None, "burst": None}])
    assert (routes["a1"].rate_per_s, routes["a1"].burst) == (10.0, 3)
    assert (routes["b2"].rate_per_s, routes["b2"].burst) == (None, None)
