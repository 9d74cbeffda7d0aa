"""The spec's autoscaling and capacity keys: mistakes are refused with file, line and key."""

from __future__ import annotations

import pytest

from steadyserve.control.spec import parse_spec
from steadyserve.errors import ConfigError


def problem(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_spec(text, "steady.yaml")
    return str(caught.value)


@pytest.mark.parametrize(("spec", "says"), [
    ("deployments:\n  a: {service: x, replicas: {min: true, max: 2}}\n",
     "steady.yaml:2: deployments.a.replicas.min: Input should be a valid integer"),
    ("deployments:\n  a: {service: x, replicas: {min: '1', max: 2}}\n",
     "steady.yaml:2: deployments.a.replicas.min: Input should be a valid integer"),
    ("deployments:\n  a: {service: x, replicas: 2, autoscaling: {target: 3}}\n",
     "autoscaling needs bounds: replicas: {min: 1, max: 2} instead of replicas: 2"),
    ("deployments:\n  a: {service: x}\ncapacity: {cpus: 2, reserve_cpus: 5}\n",
     "steady.yaml:3: capacity: reserve_cpus (5) leaves nothing of cpus (2) for replicas"),
    ("deployments:\n  a: {service: x}\ncapacity: {memory_mb: 1000, reserve_memory_mb: 1000}\n",
     "reserve_memory_mb (1000) leaves nothing of memory_mb (1000) for replicas"),
    ("deployments:\n  a: {service: x}\ncapacity: {memory_mb: 1" + "0" * 400 + "}\n",
     "steady.yaml:3: capacity.memory_mb: Input should be less than or equal to"),
    ("deployments:\n  a: {service: x, replicas: {min: 1, max: 2}, autoscaling: {window_s: 5, panic_window_s: 6}}\n",
     "panic_window_s (6) must not exceed window_s (5)"),
])
def test_a_mistake_is_refused_with_its_line_and_key(spec, says):
    assert says in problem(spec)


def test_a_short_stable_window_needs_no_panic_window_of_its_own():
    spec = parse_spec("deployments:\n  a: {service: x, replicas: {min: 1, max: 2}, autoscaling: {window_s: 5}}\n",
                      "steady.yaml")
    assert spec.deployments["a"].scaling.short_window_s == 5.0
