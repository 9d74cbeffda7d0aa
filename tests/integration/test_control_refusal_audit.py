"""Refused control-API calls over TCP in the audit log: a flood is a handful of rows whose counts add
up exactly, targets are stored sanitised and capped, and `steady audit` never prints a control
character. A real `steady serve --auth`, real clients, the audit read through `steady audit`."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from conftest import FIXTURES, STEADY, Instance, pid_alive, run_cli, start_instance, stop_instance, wait_for

from steadyserve.control.statedb import StateDB
from steadyserve.printable import AUDIT_TARGET_MAX_CHARS

pytestmark = pytest.mark.integration

ANSI = "\x1b[2J\x1b[31m\x1b]0;owned\x07"  # clear the screen, turn red, set the terminal's title
CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[tuple[Instance, dict[str, str], str]]:
    """auth on, tokens made before start; the control API's TCP address."""
    state_dir = tmp_path / "state"
    tokens = {}
    for name, role in [("ops", "admin"), ("watcher", "viewer")]:
        made = run_cli("token", "create", "--role", role, "--name", name, "--state-dir", str(state_dir))
        assert made.returncode == 0, made.stderr
        tokens[name] = made.stdout.strip()
    inst = start_instance(FIXTURES / "slow", state_dir, "--replicas", "1", "--auth")
    yield inst, tokens, inst.meta()["api_url"]
    pids = [r["pid"] for r in inst.status() if r["pid"]]
    stop_instance(inst)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def call(conn: http.client.HTTPConnection, method: str, path: str, token: str | None = None) -> int:
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
    conn.request(method, path, body=b'{"replicas": 1}' if method == "POST" else None, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def flood(api_url: str, threads: int, calls: int, per_connection: int) -> Counter[int]:
    """``threads`` x ``calls`` calls without a valid token, on a new connection (a new source port)
    every ``per_connection`` calls; 1 in 50 has a 60 KB path full of ANSI escape sequences."""
    address = urlsplit(api_url)
    paths = ["/v1/deployments", "/v1/audit", "/v1/deployments/slow/scale", "/" + quote(ANSI + "x" * 60_000)]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client(index: int) -> None:
        seen: Counter[int] = Counter()
        conn = None
        for i in range(calls):
            if i % per_connection == 0:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
            path = paths[3] if i % 50 == 49 else paths[i % 3]
            seen[call(conn, "POST" if i % 3 == 2 else "GET", path, None if i % 2 else "st_0000_nope")] += 1
        assert conn is not None
        conn.close()
        with lock:
            statuses.update(seen)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(600)
        assert not t.is_alive()
    return statuses


def audit_rows(state_dir: Path) -> list[dict]:
    result = run_cli("audit", "--json", "--limit", "1000000", "--state-dir", str(state_dir))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def control_refusals(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["action"] in ("read", "deploy", "scale", "rollback", "delete") and r["result"][:3] in ("401", "403")]


def test_a_flood_of_refused_calls_is_a_handful_of_rows_counting_every_call(instance):
    inst, _, api_url = instance
    seen = flood(api_url, threads=4, calls=2500, per_connection=250)
    assert seen == Counter({401: 10_000})
    stop_instance(inst)  # at once: the last window is still open and is written on shutdown
    rows = control_refusals(audit_rows(inst.state_dir))
    assert sum(r["count"] for r in rows) == 10_000
    assert len(rows) <= 40  # a row per key and 5 s window, not one per call
    assert {r["source"] for r in rows} == {"127.0.0.1"}  # the host: ports differ per connection
    assert {r["actor"] for r in rows} == {"-"}
    for r in rows:
        assert len(r["target"]) <= AUDIT_TARGET_MAX_CHARS and not CONTROL & set(r["target"])
    long = [r for r in rows if r["target"].partition(" ")[2].startswith("/\\x1b[2J")]
    assert long and all(r["target"].endswith("…") for r in long)
    assert sum(r["count"] for r in long) == 10_000 // 50


def test_refusals_are_written_when_their_window_ends_and_changes_one_row_each(instance):
    inst, tokens, api_url = instance
    address = urlsplit(api_url)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    try:
        forbidden = [call(conn, "POST", "/v1/deployments/slow/scale", tokens["watcher"]) for _ in range(30)]
        changes = [call(conn, "POST", "/v1/deployments/slow/scale", tokens["ops"]) for _ in range(2)]
    finally:
        conn.close()
    assert forbidden == [403] * 30 and changes == [200, 200]
    accepted = [r for r in audit_rows(inst.state_dir) if r["actor"] == "ops"]  # written with the call
    assert [(r["target"], r["result"], r["count"]) for r in accepted] == [("POST /v1/deployments/slow/scale", "200", 1)] * 2

    def counted() -> int:
        return sum(r["count"] for r in control_refusals(audit_rows(inst.state_dir)) if r["actor"] == "watcher")

    wait_for(lambda: counted() == 30, 60, "the window of 30 refusals in the audit log")
    row = next(r for r in control_refusals(audit_rows(inst.state_dir)) if r["actor"] == "watcher")
    assert (row["action"], row["target"], row["source"]) == ("scale", "POST /v1/deployments/slow/scale", "127.0.0.1")
    assert row["result"] == "403: role 'viewer' may not deploy (roles that may: admin, deployer)" and row["last_ts"] >= row["ts"]


def test_steady_audit_never_prints_a_control_character_from_a_stored_row(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    db = StateDB(state_dir / "state.db")
    try:  # as a row written before targets were sanitised, or by an older gateway, may hold
        db.add_audit("mallory\x1b]0;owned\x07", "read", f"GET /{ANSI}\u202eevil", "10.0.0.9\x1b[8m",
                     "401: \x1b[31minvalid")
    finally:
        db.close()
    env = {**os.environ, "COLUMNS": "300"}
    table = subprocess.run([*STEADY, "audit", "--state-dir", str(state_dir)], capture_output=True, text=True,
                           timeout=60, env=env)
    as_json = subprocess.run([*STEADY, "audit", "--json", "--state-dir", str(state_dir)], capture_output=True,
                             text=True, timeout=60, env=env)
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr
    for output in (table.stdout, as_json.stdout):
        assert not (CONTROL - {"\n"}) & set(output) and "\u202e" not in output
    assert "GET /\\x1b[2J\\x1b[31m\\x1b]0;owned\\x07\\u202eevil" in table.stdout
    assert "mallory\\x1b]0;owned\\x07" in table.stdout
    assert json.loads(as_json.stdout)[0]["target"] == f"GET /{ANSI}\u202eevil"  # stored as it was
