"""Building the routing table from desired and observed state."""

from __future__ import annotations

from steadyserve.control.publish import canary_route, token_routes
from steadyserve.control.spec import RolloutSettings
from steadyserve.gateway.routes import CanaryRoute

CANARY = RolloutSettings(bake_s=10, canary_percent=10)


def test_canary_share_only_while_a_rollout_bakes():
    assert canary_route(2, 1, CANARY, [95.0], now=100.0) == CanaryRoute(revision=2, percent=10)
    assert canary_route(2, 1, CANARY, [85.0], now=100.0) is None  # baked
    assert canary_route(2, None, CANARY, [95.0], now=100.0) is None  # no rollout
    assert canary_route(2, 1, CANARY, [], now=100.0) is None  # nothing ready yet
    assert canary_route(2, 1, RolloutSettings(), [95.0], now=100.0) is None  # not configured


def test_token_rate_limits_are_shared_between_gateway_processes():
    routes = token_routes([{"id": "a1", "name": "n", "role": "invoker", "digest": "d", "rate_per_s": 10.0,
                            "burst": 3}], gateway_processes=2)
    assert routes["a1"].rate_per_s == 5.0 and routes["a1"].burst == 1
