"""Tokens, roles, revocation, rate limits and the audit log, with real processes."""

from __future__ import annotations

import httpx
import pytest
from conftest import FIXTURES, run_cli

pytestmark = pytest.mark.integration

ROLES = ("admin", "deployer", "viewer", "invoker")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    from conftest import start_instance, stop_instance

    root = tmp_path_factory.mktemp("auth")
    state_dir = root / "state"
    tokens = {}
    for role in ROLES:
        result = run_cli("token", "create", "--role", role, "--name", f"{role}-bot", "--state-dir", str(state_dir))
        assert result.returncode == 0, result.stderr
        tokens[role] = result.stdout.strip()
    limited = run_cli("token", "create", "--role", "invoker", "--name", "slow-client", "--rate", "2",
                      "--burst", "2", "--state-dir", str(state_dir))
    tokens["limited"] = limited.stdout.strip()
    spec = root / "steady.yaml"
    spec.write_text(f"deployments:\n  slow:\n    service: {FIXTURES / 'slow'}\n    replicas: 1\n"
                    "gateway:\n  processes: 1\n")
    inst = start_instance(spec, state_dir, "--auth", command="up")
    import sqlite3

    with sqlite3.connect(state_dir / "state.db") as db:
        inst.api = dict(db.execute("SELECT key, value FROM meta"))["api_url"]
    yield inst, tokens
    stop_instance(inst)


def _headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def invoke(inst, token):
    return httpx.post(f"{inst.url}/slow/work", json={"ms": 1}, headers=_headers(token), timeout=30)


def read(inst, token):
    return httpx.get(f"{inst.api}/v1/deployments", headers=_headers(token), timeout=30)


def deploy(inst, token):
    return httpx.post(f"{inst.api}/v1/deployments/slow/scale", json={"replicas": 1}, headers=_headers(token),
                      timeout=30)


EXPECTED = {  # role -> (invoke, read, deploy)
    "admin": (200, 200, 200),
    "deployer": (403, 200, 200),
    "viewer": (403, 200, 403),
    "invoker": (200, 403, 403),
}


@pytest.mark.parametrize("role", ROLES)
def test_authorisation_matrix(secured, role):
    inst, tokens = secured
    got = (invoke(inst, tokens[role]).status_code, read(inst, tokens[role]).status_code,
           deploy(inst, tokens[role]).status_code)
    assert got == EXPECTED[role]


@pytest.mark.parametrize("token", [None, "st_0000_nope", "garbage"])
def test_missing_or_invalid_tokens_are_401_with_a_json_reason(secured, token):
    inst, _ = secured
    for response in (invoke(inst, token), read(inst, token), deploy(inst, token)):
        assert response.status_code == 401
        assert "token" in response.json()["error"]
        assert response.headers["www-authenticate"] == "Bearer"


def test_forbidden_names_the_role(secured):
    inst, tokens = secured
    response = invoke(inst, tokens["viewer"])
    assert response.status_code == 403 and "role 'viewer' may not invoke" in response.json()["error"]


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("deployer", 200), ("viewer", 200),
                                            ("invoker", 403), (None, 401)])
def test_metrics_need_a_token_that_may_read(secured, role, status):
    inst, tokens = secured
    response = httpx.get(f"{inst.url}/metrics", headers=_headers(tokens[role] if role else None), timeout=30)
    assert response.status_code == status
    if status == 200:
        assert "steady_requests_total" in response.text or "steady_replicas" in response.text
    else:
        assert "token" in response.json()["error"] or "may not" in response.json()["error"]


def test_a_replicas_own_metrics_are_not_reachable_through_a_deployment_path(secured):
    inst, tokens = secured
    for path in ("/slow/metrics", "/slow/healthz"):
        response = httpx.get(f"{inst.url}{path}", headers=_headers(tokens["invoker"]), timeout=30)
        assert response.status_code == 404 and "internal" in response.json()["error"]


def test_health_checks_need_no_token(secured):
    inst, _ = secured
    assert httpx.get(f"{inst.url}/v2/health/live").status_code == 200


def test_rate_limit_is_429_with_retry_after(secured):
    inst, tokens = secured
    statuses = [invoke(inst, tokens["limited"]) for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert [r.status_code for r in statuses[:2]] == [200, 200] and limited
    assert int(limited[0].headers["retry-after"]) >= 1
    assert "rate limit of token 'slow-client'" in limited[0].json()["error"]


def test_audit_records_changes_and_refusals_without_secrets(secured):
    inst, tokens = secured
    deploy(inst, tokens["deployer"])
    invoke(inst, "st_0000_nope")
    result = inst.cli("audit", "--json", "--limit", "500")
    rows = __import__("json").loads(result.stdout)
    assert any(r["actor"] == "deployer-bot" and r["target"] == "POST /v1/deployments/slow/scale"
               and r["result"] == "200" for r in rows)
    from conftest import wait_for

    wait_for(lambda: any(r["action"] == "invoke" and r["result"].startswith("401") for r in
                         __import__("json").loads(inst.cli("audit", "--json", "--limit", "500").stdout)),
             30, "the gateway's refusal in the audit log")
    everything = "".join(p.read_text() for p in (inst.state_dir / "logs").iterdir())
    everything += result.stdout
    for value in tokens.values():
        assert value not in everything
        assert value.split("_", 2)[2] not in everything


def test_revoked_token_is_refused_as_soon_as_revoke_returns(secured):
    inst, _ = secured
    created = inst.cli("token", "create", "--role", "invoker", "--name", "temp")
    token = created.stdout.strip()
    from conftest import wait_for

    wait_for(lambda: invoke(inst, token).status_code == 200, 30, "the new token to work")
    revoked = inst.cli("token", "revoke", "temp")
    assert revoked.returncode == 0, revoked.stderr
    assert invoke(inst, token).status_code == 401


def test_status_and_events_through_the_api_need_a_reading_role(secured):
    import json
    import os
    import subprocess

    from conftest import STEADY

    inst, tokens = secured

    def cli(token: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*STEADY, *args, "--api-url", inst.api], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "STEADY_TOKEN": token})

    status = cli(tokens["viewer"], "status", "--json")
    assert status.returncode == 0, status.stderr
    assert {r["deployment"] for r in json.loads(status.stdout) if r["kind"] == "replica"} == {"slow"}
    table = cli(tokens["viewer"], "status")
    assert table.returncode == 0 and f"steadyserve — {inst.api}" in table.stdout.replace("\n", "")
    assert ".steady" not in table.stdout  # the title names what was asked, not a local default
    events = cli(tokens["viewer"], "events", "--json", "--type", "ready")
    assert events.returncode == 0 and json.loads(events.stdout)
    refused = cli(tokens["invoker"], "status")
    assert refused.returncode == 1 and "403: role 'invoker' may not read (roles that may: admin, deployer, viewer)" \
        in refused.stderr
    assert "reading needs a viewer, deployer or admin token" in refused.stderr
    nobody = subprocess.run([*STEADY, "status", "--api-url", inst.api], capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "STEADY_TOKEN"})
    assert nobody.returncode == 1 and "needs a token in $STEADY_TOKEN" in nobody.stderr


def test_steady_call_refused_for_want_of_a_token_says_where_one_comes_from(secured):
    import os
    import subprocess

    from conftest import STEADY

    inst, tokens = secured
    base_env = {k: v for k, v in os.environ.items() if k != "STEADY_TOKEN"}

    def call(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*STEADY, "call", "slow", "work", "--json", '{"ms": 1}', "--url", inst.url,
                               "--state-dir", str(inst.state_dir)], capture_output=True, text=True, timeout=60,
                              env=env)

    missing = call(base_env)
    assert missing.returncode == 1 and "401" in missing.stderr
    assert "steady token create --role invoker" in missing.stderr and "export STEADY_TOKEN=" in missing.stderr
    wrong = call({**base_env, "STEADY_TOKEN": "st_nope_nope"})
    assert wrong.returncode == 1 and "the token in $STEADY_TOKEN was refused" in wrong.stderr
    right = call({**base_env, "STEADY_TOKEN": tokens["invoker"]})
    assert right.returncode == 0, right.stderr


def test_a_dashboard_session_reads_only_and_ends_when_its_token_is_revoked(secured):
    inst, _ = secured
    created = run_cli("token", "create", "--role", "viewer", "--name", "dash-viewer", "--state-dir",
                      str(inst.state_dir))
    assert created.returncode == 0, created.stderr
    with httpx.Client(base_url=inst.api, timeout=30, follow_redirects=False) as browser:
        login = browser.post("/ui/login", data={"token": created.stdout.strip()})
        assert login.status_code == 303 and "steady_session" in browser.cookies
        assert browser.get("/v1/deployments").status_code == 200
        assert browser.post("/v1/ui/logins").status_code == 401  # a cookie mints nothing
        revoked = run_cli("token", "revoke", "dash-viewer", "--state-dir", str(inst.state_dir))
        assert revoked.returncode == 0, revoked.stderr
        assert browser.get("/v1/deployments").status_code == 401
