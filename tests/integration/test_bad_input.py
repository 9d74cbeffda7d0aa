"""Every kind of bad input gets a precise error, and the replicas keep serving."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    from conftest import start_instance, stop_instance

    instance = start_instance(FIXTURES / "slow", tmp_path_factory.mktemp("bad") / "state",
                              "--replicas", "2", "--max-body-bytes", "4096")
    yield instance
    stop_instance(instance)


def _body(raw: bytes) -> dict:
    return json.loads(raw)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 422, "not valid JSON"),
        (b'{"amount": NaN}', 422, "not valid JSON"),  # pydantic's parser alone would take these
        (b'{"amount": 1e999}', 422, "not valid JSON"),
        (b'{"amount": -Infinity}', 422, "not valid JSON"),
        (b"[1, 2]", 422, "Input should be an object"),
        (b'{"amount": "lots"}', 422, "valid integer"),
        (b'{}', 422, "Field required"),
        (b'{"amount": 5, "currency": "EUR"}', 422, "Extra inputs are not permitted"),
    ],
)
def test_invalid_input_is_422_naming_the_field(inst, body, status, fragment):
    code, headers, raw = inst.request("POST", "/charge", body)
    assert code == status
    assert fragment in raw.decode()
    assert headers["x-steady-replica"] in {"r0", "r1"}


def test_field_errors_list_each_bad_field(inst):
    code, _, raw = inst.request("POST", "/charge", b'{"amount": "x", "extra": 1}')
    fields = {f["field"]: f["problem"] for f in _body(raw)["fields"]}
    assert code == 422
    assert set(fields) == {"amount", "extra"}


def test_unknown_handler_is_404_listing_handlers(inst):
    code, _, raw = inst.request("POST", "/nope", b"{}")
    body = _body(raw)
    assert code == 404
    assert body["handlers"] == ["boom", "charge", "slow_charge", "work", "wrong_type"]
    assert "nope" in body["error"]


def test_oversized_body_is_413(inst):
    code, _, raw = inst.request("POST", "/work", b'{"ms": 1, "pad": "' + b"x" * 10_000 + b'"}')
    assert code == 413
    assert "limit is 4096 bytes" in _body(raw)["error"]


def test_handler_exception_is_500_with_error_id_in_the_log(inst):
    code, headers, raw = inst.request("POST", "/boom", b"{}")
    body = _body(raw)
    assert code == 500
    assert "RuntimeError: kaboom from the handler" in body["error"]
    replica_log = (inst.state_dir / "logs" / f"slow-{headers['x-steady-replica']}.log").read_text()
    line = next(line for line in replica_log.splitlines() if body["error_id"] in line)
    assert "handler boom failed" in line
    assert "Traceback" in replica_log.split(body["error_id"], 1)[1]


def test_wrong_return_type_is_500_not_garbage(inst):
    code, _, raw = inst.request("POST", "/wrong_type", b"{}")
    assert code == 500
    assert "does not match its return annotation" in _body(raw)["error"]


def test_get_on_handler_with_required_args_is_405(inst):
    code, headers, raw = inst.request("GET", "/charge")
    assert code == 405 and headers["allow"] == "POST"
    assert _body(raw)["required"] == ["amount"]
    code, headers, _ = inst.request("DELETE", "/work")
    assert code == 405 and headers["allow"] == "GET, HEAD, POST"
    code, headers, _ = inst.request("POST", "/metrics")
    assert code == 405 and headers["allow"] == "GET, HEAD"


def test_get_allowed_without_required_args(inst):
    code, _, raw = inst.request("GET", "/work")
    assert code == 200 and _body(raw) == {"slept_ms": 20}


@pytest.mark.parametrize("path", ["/openapi.json", "/metrics"])
def test_built_in_routes_carry_request_id_and_replica_too(inst, path):
    code, headers, _ = inst.request("GET", path, headers={"x-request-id": "built-in.1"})
    assert code == 200 and headers["x-request-id"] == "built-in.1" and headers["x-steady-replica"]


def test_every_response_has_request_id_and_replica(inst):
    code, headers, _ = inst.request("POST", "/work", b'{"ms": 1}', {"x-request-id": "abc-123"})
    assert code == 200
    assert headers["x-request-id"] == "abc-123"
    assert headers["x-steady-replica"] in {"r0", "r1"}
    _, generated, _ = inst.request("POST", "/work", b'{"ms": 1}')
    assert generated["x-request-id"]


def test_malformed_http_is_400(inst):
    import socket

    with socket.create_connection(("127.0.0.1", inst.port), timeout=30) as sock:
        sock.sendall(b"NOT-HTTP garbage\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")


def test_replicas_survive_all_bad_input(inst):
    # Runs after the cases above (file order): nothing was restarted.
    rows = inst.status()
    assert all(r["state"] == "ready" and r["restarts"] == 0 for r in rows)
    code, _, raw = inst.request("POST", "/charge", b'{"amount": 7}')
    assert code == 200 and _body(raw) == {"charged": 7}


def test_openapi_document_lists_handlers_and_schemas(inst):
    code, _, raw = inst.request("GET", "/openapi.json")
    doc = _body(raw)
    assert code == 200
    assert set(doc["paths"]) == {"/boom", "/charge", "/slow_charge", "/work", "/wrong_type"}
    charge_input = doc["components"]["schemas"]["Slow_charge_input"]
    assert charge_input["properties"]["amount"]["type"] == "integer"
    assert doc["paths"]["/charge"]["post"]["x-steady-idempotent"] is False


def test_metrics_are_prometheus_text(inst):
    inst.request("POST", "/work", b'{"ms": 1}')
    families = ("steady_requests_total", "steady_request_duration_seconds_bucket", "steady_inflight_requests",
                "steady_handler_calls_total")  # the replica's, written a moment after the call
    code, headers, raw = wait_for(lambda: (r := inst.request("GET", "/metrics")) and all(
        f in r[2].decode() for f in families) and r, 30, "the replica's counts in /metrics")
    assert code == 200 and headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_replica_probes_are_not_reachable_through_the_gateway(inst, path):
    code, _, raw = inst.request("GET", path)
    assert code == 404 and "internal" in _body(raw)["error"]


def test_hostile_names_and_paths_neither_crash_the_cli_nor_reach_the_terminal_raw(tmp_path):
    import os

    from conftest import EXAMPLES, run_cli, start_instance, stop_instance

    state_dir = tmp_path / "odd [/x] \x1b]0;owned\x07 dir"
    inst = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "1")
    try:
        status = run_cli("status", "--state-dir", str(state_dir))
        assert status.returncode == 0, status.stderr
        assert "\x1b]0;owned" not in status.stdout and "Traceback" not in status.stderr
        assert "[/x]" in status.stdout.replace("\n", "")  # shown as text, not taken for markup
        bad_name = run_cli("token", "create", "--role", "viewer", "--name", "[red]adm[/red]", "--state-dir",
                           str(state_dir))
        assert bad_name.returncode == 1 and "token name '[red]adm[/red]' must be" in bad_name.stderr
    finally:
        stop_instance(inst)
    loop = tmp_path / "loop1"
    os.symlink(tmp_path / "loop2", loop)
    os.symlink(loop, tmp_path / "loop2")
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  echo:\n    service: {loop}\n")
    result = run_cli("up", "-f", str(spec), "--state-dir", str(tmp_path / "s"), "--port", "0", "--no-auth")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{spec}:3: deployments.echo.service: {loop}: cannot be resolved" in result.stderr
