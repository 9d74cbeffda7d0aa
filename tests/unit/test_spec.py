"""The deployment spec file: valid specs parse, every mistake names file, line and key."""

from __future__ import annotations

import pytest

from steadyserve.control.spec import ReplicaRange, parse_spec
from steadyserve.errors import ConfigError

GOOD = """\
deployments:
  digits:
    service: examples/digits
    replicas: {min: 1, max: 4}
    lb: consistent_hash
    hash_key: header:x-user
    retry: {max_attempts: 2, budget_ratio: 0.1}
    health: {failure_threshold: 5}
    resources: {memory_mb: 2048, cpu_share: 0.5}
    env: {MODEL_DIR: /models}
    idempotent: {predict: false}
  echo:
    service: examples/echo:Echo
gateway:
  port: 9000
  processes: 3
"""


def test_a_full_spec_parses():
    spec = parse_spec(GOOD, "steady.yaml")
    digits = spec.deployments["digits"]
    assert digits.replicas == ReplicaRange(min=1, max=4) and digits.desired_replicas == 1
    assert digits.retry.max_attempts == 2 and digits.health.failure_threshold == 5
    assert spec.deployments["echo"].desired_replicas == 2
    assert spec.gateway.port == 9000 and spec.gateway.processes == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployments:\n  a:\n    service: x\n    colour: red\n",
         "steady.yaml:4: deployments.a.colour: unknown key; the keys here: admission, alerts, autoscaling, batching,"),
        ("deployments:\n  a:\n    service: x\n    prediction: {horizon: 5}\n",
         "steady.yaml:4: deployments.a.prediction.horizon: unknown key; the keys here: error_ratio, horizon_s,"
         " latency_drift, replace, window_s"),
        ("deployments:\n  a:\n    service: x\n    alerts:\n      - {name: X, expr: inflight, threshold: 1, when: now}\n",
         "deployments.a.alerts.0.when: unknown key; the keys here: enabled, expr, for, handler, labels, name, op,"),
        ("deployments:\n  a:\n    service: x\n    slo: {availability: 99.9}\n",
         "steady.yaml:4: deployments.a.slo.availability: must be a share between 0 and 1, such as 0.999"),
        ("deployments:\n  a:\n    service: x\n    replicas: lots\n",
         "steady.yaml:4: deployments.a.replicas: must be a whole number or a mapping {min: N, max: M}"),
        ("deployments:\n  a:\n    service: x\n    replicas: {min: 3, max: 1}\n",
         "steady.yaml:4: deployments.a.replicas: max (1) must be >= min (3)"),
        ("deployments:\n  a:\n    service: x\n    timeout_s: -1\n",
         "steady.yaml:4: deployments.a.timeout_s: Input should be greater than 0"),
        ("deployments:\n  a:\n    replicas: 2\n",
         "steady.yaml:2: deployments.a.service: Field required"),
        ("deployments:\n  a:\n    service: x\n    lb: random\n",
         "steady.yaml:4: deployments.a.lb: Input should be 'round_robin', 'least_request' or 'consistent_hash'"),
        ("deployments:\n  a:\n    service: x\n    hash_key: user\n",
         "steady.yaml:4: deployments.a.hash_key: must look like 'header:<name>' or 'json:<field>'"),
        ("deployments:\n  a:\n    service: x\ngateway:\n  port: 70000\n",
         "steady.yaml:5: gateway.port: Input should be less than or equal to 65535"),
        ("deployments: [\n", "steady.yaml:2: not valid YAML"),
        ("- just\n- a list\n", "steady.yaml:1: the spec must be a mapping"),
        ("deployments: {}\n", "steady.yaml:1: deployments: declare at least one deployment"),
        ("deployments:\n  Bad_Name:\n    service: x\n", "deployment name 'Bad_Name' must match"),
    ],
)
def test_mistakes_name_file_line_and_key(text, message):
    with pytest.raises(ConfigError) as info:
        parse_spec(text, "steady.yaml")
    assert message in str(info.value)


@pytest.mark.parametrize("body", [
    '{"service": "x", "timeout_s": 1e999}',
    '{"service": "x", "admission": {"queue_timeout_s": 1e999}}',
    '{"service": "x", "health": {"stuck_grace_s": NaN}}',
    '{"service": "x\\u0000y"}',
])
def test_values_that_cannot_work_are_rejected(body):
    from pydantic import ValidationError

    from steadyserve.control.spec import DeploymentSpec

    with pytest.raises(ValidationError):
        DeploymentSpec.model_validate_json(body)


def test_an_unusable_routing_table_keeps_the_previous_one(tmp_path):
    from steadyserve.gateway.routes import RoutingTable, TableFile, write_table

    path = tmp_path / "routes.json"
    write_table(path, RoutingTable(version=1))
    follower = TableFile(path)
    assert follower.poll().version == 1
    path.write_text('{"version": 2, "services": {"x": {"timeout_s": null}}}')
    assert follower.poll() is None


def test_an_alias_bomb_is_indexed_in_its_own_size_not_expanded():
    lines = ["x:", "  a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 leaves
    lines += ["deployments:", "  echo: {service: echo}"]
    with pytest.raises(ConfigError, match=r"steady.yaml:1: x: unknown key; the keys here: backend, capacity, deployments, gateway,"):
        parse_spec("\n".join(lines) + "\n", "steady.yaml")  # returns at once: each node is indexed once


def test_an_alias_that_refers_to_itself_or_deep_nesting_is_a_clear_error():
    text = "deployments: &d\n  echo:\n    service: echo\n    env: {x: *d}\n"
    with pytest.raises(ConfigError, match=r"steady.yaml:4: deployments.echo.env.x: Input should be a valid string"):
        parse_spec(text, "steady.yaml")
    deep = "x: " + "[" * 20_000 + "]" * 20_000 + "\ndeployments: {}\n"
    with pytest.raises(ConfigError, match=r"steady.yaml: nested too deeply \(or an alias refers to itself\)"):
        parse_spec(deep, "steady.yaml")


def test_a_deployment_name_with_a_trailing_newline_is_refused():
    with pytest.raises(ConfigError, match=r"deployment name 'echo\\n' must match"):
        parse_spec('deployments:\n  "echo\\n": {service: echo}\n', "steady.yaml")


def test_a_spec_that_is_not_a_regular_file_or_too_big_is_refused_before_reading(tmp_path):
    from steadyserve.control.spec import MAX_SPEC_BYTES, load_spec

    with pytest.raises(ConfigError, match="not a regular file"):
        load_spec(tmp_path)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_spec(__import__("pathlib").Path("/dev/zero"))
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_SPEC_BYTES + 1))
    with pytest.raises(ConfigError, match="over 1 MiB"):
        load_spec(big)


def test_the_backend_defaults_to_local_and_ray_needs_an_address():
    local = parse_spec("deployments:\n  echo: {service: echo}\n", "steady.yaml")
    assert local.backend.kind == "local" and local.backend.address is None
    ray = parse_spec("deployments:\n  echo: {service: echo, resources: {cpus: 0.5, gpus: 1, custom: {accel: 2}}}\n"
                     "backend: {kind: ray, address: 'ray://head:10001'}\n", "steady.yaml")
    assert (ray.backend.kind, ray.backend.address, ray.backend.namespace) == ("ray", "ray://head:10001", "steadyserve")
    resources = ray.deployments["echo"].resources
    assert (resources.cpus, resources.gpus, resources.custom) == (0.5, 1.0, {"accel": 2.0})


@pytest.mark.parametrize(("backend", "message"), [
    ("{kind: ray}", "steady.yaml:3: backend: kind: ray needs the cluster's address"),
    ("{kind: local, address: 'x:1'}", "address is for kind: ray"),
    ("{kind: k8s}", "steady.yaml:3: backend.kind: Input should be 'local' or 'ray'"),
    ("{kind: ray, address: auto, namespace: 'a b'}", "backend.namespace: String should match pattern"),
])
def test_a_backend_that_cannot_work_is_refused_with_its_line(backend, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(f"deployments:\n  echo: {{service: echo}}\nbackend: {backend}\n", "steady.yaml")


@pytest.mark.parametrize(("custom", "message"), [
    ("{CPU: 1}", "custom resource 'CPU'"), ("{'a b': 1}", "custom resource 'a b'"),
    ("{accel: -1}", "amount -1.0 must be between 0 and 1e6"),
])
def test_custom_resources_are_checked(custom, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(f"deployments:\n  echo: {{service: echo, resources: {{custom: {custom}}}}}\n", "steady.yaml")
