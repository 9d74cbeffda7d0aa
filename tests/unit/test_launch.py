"""The command lines the controller starts processes with."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from steadyserve.control.launch import gateway_args
from steadyserve.control.spec import GatewaySpec, HttpLimitsSpec
from steadyserve.wire.limits import ServerLimits, add_limit_flags, limits_from_flags


def test_every_server_limit_is_a_gateway_setting_with_the_same_default():
    spec_fields = set(HttpLimitsSpec.model_fields) | {"max_body_bytes"}
    assert spec_fields == {f.name for f in fields(ServerLimits)}
    for name, value in HttpLimitsSpec().model_dump().items():
        assert getattr(ServerLimits(), name) == value


def test_gateway_http_settings_reach_the_gateway_process():
    import argparse

    spec = GatewaySpec(http={"header_timeout_s": 2.5, "max_connections": 50}, max_body_bytes=1000)
    args = gateway_args(spec, "g0", Path("/s/routes.json"), "unix:/s/g0.sock", grace_s=3)
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-body-bytes", type=int)
    add_limit_flags(parser)
    parsed, _ = parser.parse_known_args(args)
    limits = limits_from_flags(parsed)
    assert (limits.header_timeout_s, limits.max_connections, limits.max_body_bytes) == (2.5, 50, 1000)
    assert limits.max_url_bytes == ServerLimits().max_url_bytes


def test_replicas_get_one_math_library_thread_unless_told_otherwise():
    from steadyserve.control.launch import child_base_env, replica_env

    def env_of(deployment_env: dict[str, str], operator_env: dict[str, str]) -> dict[str, str]:
        return {**child_base_env(operator_env), **replica_env(deployment_env)}

    assert env_of({}, {})["OMP_NUM_THREADS"] == "1"
    assert env_of({"OMP_NUM_THREADS": "8"}, {})["OMP_NUM_THREADS"] == "8"  # the deployment's env wins
    assert env_of({}, {"MKL_NUM_THREADS": "4"})["MKL_NUM_THREADS"] == "4"  # the operator's is inherited
    assert env_of({"MODEL_DIR": "/m"}, {})["MODEL_DIR"] == "/m"


def test_children_keep_only_the_allow_listed_part_of_the_operators_environment():
    from steadyserve.control.launch import child_base_env, replica_env

    operator = {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "VIRTUAL_ENV": "/v",
                "STEADY_TOKEN": "st_admin_secret", "AWS_SECRET_ACCESS_KEY": "x", "STEADY_API_URL": "http://h"}
    base = child_base_env(operator)
    assert {"PATH", "HOME", "LC_ALL", "VIRTUAL_ENV"} <= set(base)
    assert not {"STEADY_TOKEN", "AWS_SECRET_ACCESS_KEY", "STEADY_API_URL"} & set(base)
    assert replica_env({"A": "1"}, {"A": "secret"})["A"] == "secret"  # a secret wins over a plain env value
