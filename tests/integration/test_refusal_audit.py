"""Every refusal accounted for in the audit, and token rate limits shared by the gateway processes.

`steady serve --gateways 2 --auth`, real clients over many connections (so both
gateway processes answer: SO_REUSEPORT spreads connections), the audit read
through `steady audit --json` as an operator reads it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FIXTURES, Instance, pid_alive, run_cli, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[tuple[Instance, dict[str, str]]]:
    """Two gateway processes, auth on, and tokens made before start (so every gateway has them at once)."""
    state_dir = tmp_path / "state"
    tokens = {}
    for name, role, limit in [("flood-viewer", "viewer", ()), ("flood-limited", "invoker", ("5", "5")),
                              ("paced", "invoker", ("20", "5")), ("shared", "invoker", ("20", "10"))]:
        extra = ["--rate", limit[0], "--burst", limit[1]] if limit else []
        made = run_cli("token", "create", "--role", role, "--name", name, *extra, "--state-dir", str(state_dir))
        assert made.returncode == 0, made.stderr
        tokens[name] = made.stdout.strip()
    inst = start_instance(FIXTURES / "slow", state_dir, "--replicas", "1", "--gateways", "2", "--auth")
    yield inst, tokens
    pids = [r["pid"] for r in inst.status() if r["pid"]]
    stop_instance(inst)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


class Tally:
    """What the clients saw: responses by status, and which gateway processes answered."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.gateways: set[str] = set()
        self.retry_after: list[int] = []
        self._lock = threading.Lock()

    def add(self, status: int, headers: http.client.HTTPMessage) -> None:
        with self._lock:
            self.statuses[status] += 1
            self.gateways.add((headers.get("x-request-id") or "?").partition("-")[0])  # "g0-<instance>-<n>"
            if status == 429:
                self.retry_after.append(int(headers["retry-after"]))


def call(conn: http.client.HTTPConnection, token: str | None, tally: Tally) -> int:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    conn.request("POST", "/slow/work", body=b'{"ms": 1}', headers=headers)
    response = conn.getresponse()
    response.read()
    tally.add(response.status, response.headers)
    return response.status


def run_threads(count: int, target) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
        assert not t.is_alive()


def flood(port: int, tokens: dict[str, str], threads: int, connections: int, calls: int) -> Tally:
    """Refused calls of every kind over threads x connections keep-alive connections."""
    tally = Tally()
    bad = [None, "st_0000_nope", "garbage", "st_ffffffff_" + "x" * 43]

    def client(index: int) -> None:
        for c in range(connections):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                for i in range(calls):
                    n = index + c + i
                    token = (tokens["flood-viewer"] if n % 10 == 0 else tokens["flood-limited"] if n % 10 == 1
                             else bad[n % len(bad)])
                    call(conn, token, tally)
            finally:
                conn.close()

    run_threads(threads, client)
    return tally


def audited(inst: Instance) -> Counter[int]:
    """Refused calls in the audit log, by status, summed over the rows' counts."""
    result = inst.cli("audit", "--json", "--limit", "1000000")
    assert result.returncode == 0, result.stderr
    totals: Counter[int] = Counter()
    for row in json.loads(result.stdout):
        if row["action"] == "invoke":
            totals[int(row["result"].partition(":")[0])] += row["count"]
    return totals


def refusals(tally: Tally) -> Counter[int]:
    return Counter({s: n for s, n in tally.statuses.items() if s in (401, 403, 429)})


def wait_until_audit_adds_up(inst: Instance, expected: Counter[int]) -> None:
    last: list[Counter[int]] = []

    def adds_up() -> bool:
        last[:] = [audited(inst)]
        return last[0] == expected

    try:
        wait_for(adds_up, 60, f"the audit to count exactly {dict(expected)}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; audit has {dict(last[0]) if last else '?'}") from None


def test_a_flood_of_refusals_is_audited_exactly_in_aggregated_rows(instance):
    inst, tokens = instance
    tally = flood(inst.port, tokens, threads=8, connections=10, calls=70)
    seen = refusals(tally)
    assert sum(seen.values()) >= 5000 and seen[429] > 0 and seen[403] > 0
    assert tally.gateways == {"g0", "g1"}  # both gateway processes refused calls
    wait_until_audit_adds_up(inst, seen)
    rows = json.loads(inst.cli("audit", "--json", "--limit", "1000000").stdout)
    assert len(rows) < 200  # aggregated: not a row per call
    table = inst.cli("audit", "--limit", "1000000", "--state-dir", str(inst.state_dir)).stdout
    assert f"401: {seen[401]}" in table  # `steady audit` shows the counts


def test_refusals_a_killed_gateway_had_not_reported_are_still_counted(instance):
    inst, tokens = instance
    tally = flood(inst.port, tokens, threads=4, connections=4, calls=60)
    assert tally.gateways == {"g0", "g1"}
    # At once: the refusals of the last few seconds are in the gateways' open windows, not yet reported.
    for row in inst.status():
        if row["kind"] == "gateway":
            os.kill(row["pid"], signal.SIGKILL)
    wait_until_audit_adds_up(inst, refusals(tally))


def test_one_connection_gets_the_whole_rate_of_its_token(instance):
    inst, tokens = instance  # "paced": 20/s, burst 5
    tally = Tally()
    conn = http.client.HTTPConnection("127.0.0.1", inst.port, timeout=60)
    try:
        for _ in range(30):  # 12/s for 2.5 s: over what one of two processes would get with a split limit
            started = time.monotonic()
            call(conn, tokens["paced"], tally)
            time.sleep(max(0.0, started + 1 / 12 - time.monotonic()))  # pacing the client, not waiting on state
    finally:
        conn.close()
    assert tally.statuses == Counter({200: 30})


def test_many_connections_together_get_no_more_than_the_tokens_rate(instance):
    inst, tokens = instance  # "shared": 20/s, burst 10
    tally = Tally()
    rate_per_s, burst, run_s = 20.0, 10, 2.0
    started = time.monotonic()

    def client(_: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", inst.port, timeout=60)
        try:
            while time.monotonic() - started < run_s:
                call(conn, tokens["shared"], tally)
        finally:
            conn.close()

    run_threads(16, client)
    elapsed_s = time.monotonic() - started  # from before the first call to after the last answer
    admitted = tally.statuses[200]
    assert tally.gateways == {"g0", "g1"} and tally.statuses[429] > 0
    assert set(tally.statuses) <= {200, 429}
    assert burst <= admitted <= burst + rate_per_s * elapsed_s * 1.1
    assert min(tally.retry_after) >= 1
