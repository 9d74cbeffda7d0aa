"""The gateway's /metrics: one scrape target, exact across every gateway and replica process.

Real processes (two gateway processes sharing the port, two replicas), real calls over fresh
connections (the kernel spreads them over both gateways), Debian's promtool on the output, and
a real Prometheus server scraping the instance.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import FIXTURES, free_port, start_instance, stop_instance, wait_for
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

CALLS_OK, CALLS_FAILING, CALLS_UNKNOWN = 40, 7, 5


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: `make test` installs Debian's prometheus package (apt-get install prometheus)"
    return found


def scrape(inst) -> dict[tuple[str, frozenset], float]:
    conn = http.client.HTTPConnection("127.0.0.1", inst.port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        text = response.read().decode()
    finally:
        conn.close()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def call(inst, path: str, body: bytes = b"{}") -> int:
    """One call on a new connection: the kernel picks the gateway process each time."""
    conn = http.client.HTTPConnection("127.0.0.1", inst.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    inst = start_instance(FIXTURES / "slow", tmp_path_factory.mktemp("metrics") / "state", "--replicas", "2",
                          "--gateways", "2")
    statuses = [call(inst, "/work", b'{"ms": 1}') for _ in range(CALLS_OK)]
    statuses += [call(inst, "/boom") for _ in range(CALLS_FAILING)]
    statuses += [call(inst, f"/no-such-handler-{i}") for i in range(CALLS_UNKNOWN)]
    assert statuses.count(200) == CALLS_OK and statuses.count(500) == CALLS_FAILING
    assert statuses.count(404) == CALLS_UNKNOWN
    yield inst
    stop_instance(inst)


def _settled(inst, name: str, expected: float, **labels: str) -> dict:
    """The scrape once the processes have written what they counted (they do a few times a second)."""
    return wait_for(lambda: _scrape_if(inst, name, expected, **labels), 30, f"{name}{labels} == {expected}")


def _scrape_if(inst, name: str, expected: float, **labels: str) -> dict | None:
    samples = scrape(inst)
    return samples if total(samples, name, **labels) == expected else None


def test_calls_are_counted_exactly_once_by_code_across_both_gateways(served):
    expected = {("work", "200"): CALLS_OK, ("boom", "500"): CALLS_FAILING, ("unknown", "404"): CALLS_UNKNOWN}

    def settled() -> dict | None:  # each gateway process writes its counts on its own schedule: all of them
        samples = scrape(served)
        return samples if all(total(samples, "steady_requests_total", deployment="slow", handler=handler, code=code)
                              == value for (handler, code), value in expected.items()) else None

    samples = wait_for(settled, 30, f"both gateways' counts {expected}")
    assert total(samples, "steady_request_duration_seconds_count", deployment="slow", handler="work") == CALLS_OK
    assert total(samples, "steady_admission_total", deployment="slow", decision="admitted") == (
        CALLS_OK + CALLS_FAILING + CALLS_UNKNOWN)
    # Both gateway processes took calls, and /metrics (answered by one of them) counts both.
    shards = [json.loads(p.read_text()) for p in (served.state_dir / "metrics").glob("gateway-*.json")]
    counting = [s for s in shards if any(name == "steady_requests" and value > 0 for name, _, value in s["counters"])]
    assert len(counting) == 2


def test_handler_calls_are_summed_over_replicas(served):
    expected = {("steady_handler_calls_total", "work", "200"): CALLS_OK,
                ("steady_handler_calls_total", "boom", "500"): CALLS_FAILING}

    def settled() -> dict | None:  # each replica writes its counts on its own schedule: all of them
        samples = scrape(served)
        return samples if all(total(samples, name, deployment="slow", handler=handler, code=code) == value
                              for (name, handler, code), value in expected.items()) else None

    samples = wait_for(settled, 30, f"the replicas' counts {expected}")
    assert total(samples, "steady_handler_duration_seconds_count", handler="work") == CALLS_OK
    by_revision = {dict(ls)["revision"] for (n, ls), _ in samples.items() if n == "steady_handler_calls_total"}
    assert by_revision == {"1"}


def test_hostile_paths_do_not_create_series(served):
    samples = scrape(served)
    handlers = {dict(ls).get("handler") for (n, ls), _ in samples.items() if n == "steady_requests_total"}
    assert not any(h and h.startswith("no-such-handler") for h in handlers)


def test_process_metrics_name_every_ready_replica(served):
    samples = wait_for(lambda: _scrape_if(served, "steady_replicas", 2, state="ready"), 30,
                       "two ready replicas in steady_replicas")
    memory = {dict(ls)["replica"]: v for (n, ls), v in samples.items() if n == "steady_replica_resident_memory_bytes"}
    assert set(memory) == {"r0", "r1"} and all(v > 1e6 for v in memory.values())
    cpu = {dict(ls)["replica"] for (n, ls), _ in samples.items() if n == "steady_replica_cpu_seconds_total"}
    assert cpu == {"r0", "r1"}
    assert total(samples, "steady_controller_tick_duration_seconds_count") > 0


def test_promtool_accepts_the_exposition(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    text = response.read()
    conn.close()
    assert response.getheader("content-type").startswith("text/plain; version=0.0.4")
    checked = subprocess.run([_tool("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_metrics_answers_get_and_head_only(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    conn.request("HEAD", "/metrics")
    head = conn.getresponse()
    head.read()
    conn.request("DELETE", "/metrics")
    deleted = conn.getresponse()
    body = json.loads(deleted.read())
    conn.close()
    assert head.status == 200 and int(head.getheader("content-length")) > 0
    assert deleted.status == 405 and deleted.getheader("allow") == "GET, HEAD" and "/metrics" in body["error"]


def test_a_killed_replica_takes_none_of_its_counts_with_it(served):
    before = _settled(served, "steady_handler_calls_total", CALLS_OK, deployment="slow", handler="work", code="200")
    victim = served.process("replica", "r0")
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: served.process("replica", "r0")["pid"] not in (None, victim["pid"]) and served.all_ready(),
             60, "r0 to be replaced")
    # The controller writes its own metrics once a history step (5 s): wait for the restart there.
    after = wait_for(lambda: (s := scrape(served)) and total(s, "steady_replica_restarts_total", deployment="slow") >= 1
                     and s, 30, "the restart in steady_replica_restarts_total")
    for name in ("steady_handler_calls_total", "steady_requests_total"):
        assert total(after, name, handler="work", code="200") == total(before, name, handler="work", code="200")
    assert call(served, "/work", b'{"ms": 1}') == 200
    _settled(served, "steady_handler_calls_total", CALLS_OK + 1, deployment="slow", handler="work", code="200")


def test_a_real_prometheus_sees_what_clients_did(served, tmp_path):
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: steady\n    static_configs:\n      - targets: ['127.0.0.1:{served.port}']\n")
    server = subprocess.Popen(
        [_tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def query(expr: str) -> float | None:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    result = json.load(response)["data"]["result"]
            except OSError:
                return None
            return float(result[0]["value"][1]) if result else None

        assert call(served, "/work", b'{"ms": 1}') == 200

        def agree() -> bool:  # what Prometheus stored equals what /metrics says now (both settle)
            stored = query('sum(steady_requests_total{deployment="slow",handler="work",code="200"})')
            return stored is not None and stored > CALLS_OK and stored == total(
                scrape(served), "steady_requests_total", handler="work", code="200")

        wait_for(agree, 90, "Prometheus to hold the calls /metrics counts")
        assert query('sum(steady_requests_total{deployment="slow",handler="boom",code="500"})') == CALLS_FAILING
        assert query('up{job="steady"}') == 1.0
        assert query("count(steady_replica_resident_memory_bytes)") == 2
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def test_the_dead_processes_shards_are_folded_without_changing_a_total(served):
    from steadyserve.metrics.exposition import flatten
    from steadyserve.metrics.shards import compact, read_merged

    directory = Path(served.state_dir) / "metrics"
    before = flatten(read_merged(directory))
    compact(directory)  # the killed replica's shard (the controller does this once a minute)
    after = flatten(read_merged(directory))
    counters = {k: v for k, v in before.items() if k[0].endswith(("_total", "_count", "_sum", "_bucket"))
                and not k[0].startswith(("steady_controller", "steady_replica_cpu"))}
    assert counters and all(after.get(k) == v for k, v in counters.items())
    assert (directory / "archive.json").exists()


def test_counters_of_every_deployment_are_there_at_zero_before_they_count(served):
    samples = wait_for(lambda: (s := scrape(served)) and any(n == "steady_replica_restarts_total" for n, _ in s) and s,
                       30, "the controller's counters")
    for name in ("steady_retries_total", "steady_ejections_total", "steady_replica_restarts_total"):
        assert any(n == name and ("deployment", "slow") in ls for n, ls in samples), name
    decisions = {dict(ls)["decision"] for n, ls in samples if n == "steady_admission_total"}
    assert decisions == {"admitted", "shed"}
