"""Replicas as Ray actors: a real Ray cluster (a head and three worker nodes, all on this
machine, from ``ray.cluster_utils.Cluster``), a real `steady up` joined to it, real calls
through the gateway to the actors' TCP endpoints, real node loss and real SIGKILLs.

The tests run in file order on one cluster and one instance: the last one removes a node.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import ray
import yaml
from conftest import (
    EXAMPLES,
    FIXTURES,
    Instance,
    LoadStream,
    free_port,
    run_cli,
    start_instance,
    stop_with_children,
    wait_for,
)
from ray import cluster_utils

pytestmark = pytest.mark.integration
ECHO = EXAMPLES / "echo" / "service.py"


@pytest.fixture(scope="module")
def cluster():
    """A head that runs no replicas (0 CPUs) and three worker nodes of 2 CPUs; one has an accelerator."""
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [c.add_node(num_cpus=2, resources={"accel": 1} if i == 2 else {}) for i in range(3)]
    c.wait_for_nodes()
    c.worker_nodes_list = nodes
    ray.init(address=c.address, log_to_driver=False)  # this test reads the cluster's nodes as a driver
    yield c
    ray.shutdown()
    c.shutdown()


def _spec(path: Path, address: str, env_version: str = "1", extra: dict[str, Any] | None = None) -> Path:
    deployments: dict[str, Any] = {
        "echo": {"service": str(ECHO), "replicas": 3, "env": {"VERSION": env_version}, "rollout": {"bake_s": 1}},
        "nosy": {"service": str(FIXTURES / "nosy" / "service.py"), "replicas": 1, "resources": {"cpus": 0.25}},
        **(extra or {}),
    }
    path.write_text(yaml.safe_dump({"deployments": deployments, "backend": {"kind": "ray", "address": address}}))
    return path


@pytest.fixture(scope="module")
def instance(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    spec = _spec(root / "steady.yaml", cluster.address)
    inst = start_instance(spec, root / "state", command="up")
    yield inst
    stop_with_children(inst)


def _replicas(inst: Instance, deployment: str = "echo") -> list[dict[str, Any]]:
    return [r for r in inst.status() if r["kind"] == "replica" and r["deployment"] == deployment]


def _ready(inst: Instance, deployment: str = "echo") -> list[dict[str, Any]]:
    return [r for r in _replicas(inst, deployment) if r["state"] == "ready"]


def _rows(inst: Instance) -> list[dict[str, Any]]:
    """The state DB's process rows as the controller wrote them (endpoints and credentials included)."""
    conn = sqlite3.connect(f"file:{inst.state_dir / 'state.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM processes WHERE kind = 'replica'")]
    finally:
        conn.close()


def _live_nodes() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def _raw_call(endpoint: str, path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, bytes]:
    host, _, port = endpoint.removeprefix("tcp:").rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body,
                     headers={"content-type": "application/json", **headers})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_each_replica_is_a_ray_actor_on_its_own_node_and_serves_through_the_gateway(instance, cluster):
    replicas = _ready(instance)
    assert len(replicas) == 3
    nodes = [r["node"] for r in replicas]
    assert len(set(nodes)) == 3 and set(nodes) <= _live_nodes()  # spread: one per worker node
    assert all(r["endpoint"].startswith("tcp:") for r in _rows(instance))
    seen = set()
    for i in range(30):
        status, headers, body = instance.post_json("/echo/echo", {"message": f"m{i}"})
        assert status == 200 and body == {"message": f"m{i}"}
        seen.add(headers["x-steady-replica"])
    assert seen == {"r0", "r1", "r2"}
    table = instance.cli("status")
    assert table.returncode == 0 and "node" in table.stdout and nodes[0][:12] in table.stdout


def test_what_a_replica_on_a_node_writes_reaches_the_instances_logs(instance):
    wait_for(lambda: "replica r0 ready" in (instance.state_dir / "logs" / "echo-r0.log").read_text(), 30,
             "r0's log copied from its node")
    logs = wait_for(lambda: (r := instance.cli("logs", "echo", "--grep", "ready")).returncode == 0
                    and "ready (handlers: echo)" in r.stdout and r, 30, "the log lines collected")
    assert "r0" in logs.stdout


def test_a_replica_port_refuses_calls_without_the_gateways_credential(instance):
    row = next(r for r in _rows(instance) if r["state"] == "ready")
    endpoint, key = row["endpoint"], row["credential"]
    body = json.dumps({"message": "sneaky"}).encode()
    for headers in ({}, {"x-steady-replica-key": "x" * 43}, {"x-steady-replica-key": key[:-1]}):
        for path, payload in (("/echo", body), ("/healthz", None), ("/metrics", None)):
            status, answer = _raw_call(endpoint, path, headers, payload)
            assert status == 401, (path, headers, answer)
            assert b"sneaky" not in answer and b"serves only its steadyserve gateways" in answer
    # The credential is what opens it (so the refusals above are about the credential alone) ...
    assert _raw_call(endpoint, "/echo", {"x-steady-replica-key": key}, body) == (200, b'{"message":"sneaky"}')
    # ... and it is never shown: not by `steady status --json`, not by the control API.
    assert key not in instance.cli("status", "--json").stdout
    assert key not in instance.api("GET", "/v1/replicas").text


def test_the_credential_is_not_in_the_services_environment(instance):
    status, _, environ = instance.post_json("/nosy/environ", {})
    assert status == 200 and "PATH" in environ  # it does see its environment ...
    keys = {r["credential"] for r in _rows(instance)}
    assert "STEADY_REPLICA_KEY" not in environ and not keys & set(environ.values())  # ... but not the key


def test_a_replica_killed_on_its_node_is_restarted_and_no_call_fails(instance):
    victim = _ready(instance)[0]
    with LoadStream(instance.port, "/echo/echo", {"message": "load"}, threads=2) as load:
        wait_for(lambda: load.ok >= 20, 60, "calls before the kill")
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(lambda: any(r["id"] == victim["id"] and r["state"] == "ready" and r["pid"] != victim["pid"]
                             for r in _replicas(instance)), 90, "the killed replica to be replaced")
        wait_for(lambda: len(_ready(instance)) == 3, 60, "three ready replicas")
        done = load.ok
        wait_for(lambda: load.ok >= done + 20, 60, "calls after the restart")
    assert load.failures == []
    crashed = [e for e in instance.events() if e["subject"] == victim["id"] and e["type"] in ("crashed", "exited")]
    assert crashed, "the supervisor saw the crash"


def test_scaling_keeps_the_replicas_spread_over_the_nodes(instance):
    assert instance.cli("scale", "echo", "5").returncode == 0
    wait_for(lambda: len(_ready(instance)) == 5, 120, "five ready replicas")
    per_node = Counter(r["node"] for r in _ready(instance))
    assert sorted(per_node.values()) == [1, 2, 2]
    assert instance.cli("scale", "echo", "3").returncode == 0
    wait_for(lambda: len(_replicas(instance)) == 3 and len(_ready(instance)) == 3, 120, "back to three")


def test_a_deployment_that_does_not_fit_says_so_and_the_rest_keeps_serving(instance, tmp_path):
    spec = _spec(tmp_path / "steady.yaml", "unused", extra={
        "accel": {"service": str(ECHO), "replicas": 2, "resources": {"custom": {"accel": 1}, "cpus": 0.5}}})
    assert instance.cli("deploy", "-f", str(spec)).returncode == 0
    wait_for(lambda: len(_ready(instance, "accel")) == 1, 120, "the replica that fits")
    refused = wait_for(lambda: [e for e in instance.events() if e["deployment"] == "accel"
                                and "no Ray node has room" in e["message"]], 60, "the placement refusal")
    assert "needs CPU 0.5, accel 1" in refused[0]["message"] and "accel 0 free" in refused[0]["message"]
    assert refused[0]["type"] == "unschedulable"
    waiting = next(r for r in _replicas(instance, "accel") if r["state"] != "ready")
    assert waiting["state"] == "backoff" and waiting["restarts"] == 0 and waiting["pid"] is None  # not a crash
    assert not [e for e in instance.events() if e["deployment"] == "accel" and e["type"] in ("crash_loop", "restarted")]
    status, _, body = instance.post_json("/echo/echo", {"message": "still here"})
    assert status == 200 and body == {"message": "still here"}
    status, _, body = instance.post_json("/accel/echo", {"message": "on the accelerator node"})
    assert status == 200
    assert instance.cli("delete", "accel").returncode == 0
    wait_for(lambda: not _replicas(instance, "accel"), 60, "accel deleted")


def test_hung_handlers_and_crash_loops_are_handled_on_the_cluster_as_locally(instance, tmp_path):
    spec = _spec(tmp_path / "steady.yaml", "unused", extra={
        "misbehaving": {"service": str(FIXTURES / "misbehaving"), "replicas": 2, "handler_timeout_s": 1,
                        "resources": {"cpus": 0.25}},
        "crashy": {"service": str(FIXTURES / "crashy"), "replicas": 1, "resources": {"cpus": 0.25}}})
    assert instance.cli("deploy", "-f", str(spec)).returncode == 0
    wait_for(lambda: len(_ready(instance, "misbehaving")) == 2, 120, "misbehaving ready")
    with LoadStream(instance.port, "/misbehaving/nap", {"ms": 5}, threads=2) as load:
        wait_for(lambda: load.ok >= 10, 60, "calls flowing")
        code, headers, body = instance.post_json("/misbehaving/hang", {})
        assert code == 504, body
        stuck = headers["x-steady-replica"]
        pid = next(r["pid"] for r in _replicas(instance, "misbehaving") if r["id"] == stuck)
        wait_for(lambda: pid not in {r["pid"] for r in _replicas(instance, "misbehaving")}
                 and len(_ready(instance, "misbehaving")) == 2, 120, f"the stuck replica {stuck} replaced")
        served = load.ok
        wait_for(lambda: load.ok >= served + 10, 60, "calls after the replacement")
    assert load.failures == []
    assert any("stuck" in e["message"] for e in instance.events() if e["subject"] == stuck)
    # A replica whose setup fails on its node: its own error reaches the events, then a crash loop is named.
    crashed = wait_for(lambda: [e for e in instance.events() if e["deployment"] == "crashy"
                                and "model weights missing" in e["message"]], 120, "crashy's error")
    assert "ValueError" in crashed[0]["message"]
    wait_for(lambda: any(r["state"] == "crash_loop" for r in _replicas(instance, "crashy")), 180, "a crash loop")
    for name in ("misbehaving", "crashy"):
        assert instance.cli("delete", name).returncode == 0
    wait_for(lambda: not _replicas(instance, "misbehaving") and not _replicas(instance, "crashy"), 90,
             "both deleted")


def test_the_autoscaler_adds_replicas_on_the_cluster_under_load(instance, tmp_path):
    fast = {"metric": "inflight", "target": 1, "decision_s": 1, "window_s": 4, "panic_window_s": 2,
            "scale_down": {"stabilization_s": 3, "period_s": 2}}
    spec = _spec(tmp_path / "steady.yaml", "unused", extra={
        "slow": {"service": str(FIXTURES / "slow"), "replicas": {"min": 1, "max": 3}, "autoscaling": fast,
                 "resources": {"cpus": 0.25}}})
    assert instance.cli("deploy", "-f", str(spec)).returncode == 0
    wait_for(lambda: len(_ready(instance, "slow")) == 1, 120, "slow ready")
    with LoadStream(instance.port, "/slow/work", {"ms": 150}, threads=3) as load:
        wait_for(lambda: len(_ready(instance, "slow")) >= 3, 120, "a scale-out on the cluster")
        nodes = {r["node"] for r in _ready(instance, "slow")}
    assert load.failures == [] and len(nodes) == 3  # spread: one per node
    assert any(e["type"] == "autoscaled" for e in instance.events() if e["deployment"] == "slow")
    wait_for(lambda: len(_replicas(instance, "slow")) == 1, 120, "a scale-in once the load stopped")
    assert instance.cli("delete", "slow").returncode == 0
    wait_for(lambda: not _replicas(instance, "slow"), 90, "slow deleted")


def test_a_restarted_controller_adopts_the_replicas_on_the_cluster_and_releases_leftovers(instance):
    before = {r["id"]: (r["pid"], r["node"]) for r in _ready(instance)}
    # An actor of this instance that no replica holds (as a start the killed controller never saw finish).
    from steadyserve.control.backends.ray_host import ReplicaHost

    leftover = f"steady-{instance.meta()['instance_id']}-echo-r99-1"
    ray.remote(ReplicaHost).options(name=leftover, namespace="steadyserve", lifetime="detached",
                                    num_cpus=0).remote()
    assert leftover in {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
    with LoadStream(instance.port, "/echo/echo", {"message": "controller restart"}, threads=2) as load:
        wait_for(lambda: load.ok >= 10, 60, "calls flowing")
        instance.proc.kill()  # SIGKILL: no chance to stop anything
        instance.proc.wait(30)
        served = load.ok
        wait_for(lambda: load.ok >= served + 20, 60, "calls while the controller is down")
        spec = Path(instance.proc.args[instance.proc.args.index("-f") + 1])
        restarted = start_instance(spec, instance.state_dir, command="up", port=instance.port)
        instance.proc, instance.output = restarted.proc, restarted.output
        served = load.ok
        wait_for(lambda: load.ok >= served + 20, 60, "calls after the restart")
    assert load.failures == []
    after = {r["id"]: (r["pid"], r["node"]) for r in _ready(instance)}
    assert after == before  # adopted, not restarted
    assert any(e["type"] == "recovered" and "adopted" in e["message"] for e in instance.events())
    wait_for(lambda: leftover not in {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}, 30,
             "the leftover actor released")


def test_a_rolling_update_on_the_cluster_fails_no_call(instance, cluster, tmp_path):
    before = {r["revision"] for r in _ready(instance)}
    spec = _spec(tmp_path / "steady.yaml", cluster.address, env_version="2")
    with LoadStream(instance.port, "/echo/echo", {"message": "update"}, threads=2) as load:
        rolled = run_cli("deploy", "-f", str(spec), "--wait", "--timeout-s", "240", "--state-dir",
                         str(instance.state_dir), timeout_s=300)
        assert rolled.returncode == 0, (rolled.stdout, rolled.stderr, instance.events()[-30:])
        done = load.ok
        wait_for(lambda: load.ok >= done + 10, 60, "calls after the update")
    assert load.failures == []
    after = _ready(instance)
    assert len(after) == 3 and {r["revision"] for r in after} != before and len({r["revision"] for r in after}) == 1
    # Spread, though not always one per node: with every node's CPUs taken, a surge replica goes where an
    # old one has already left (see the note in placement.py).
    assert len({r["node"] for r in after}) >= 2


def test_a_gateway_on_another_machine_learns_the_replicas_from_the_controller(instance, tmp_path):
    """``--discovery controller``: the routing table over the control API, with an admin token only."""
    admin = instance.cli("token", "create", "--role", "admin", "--name", "remote-gateway").stdout.strip()
    viewer = instance.cli("token", "create", "--role", "viewer", "--name", "onlooker").stdout.strip()
    api_url = instance.meta()["api_url"]
    assert httpx.get(f"{api_url}/v1/routes", headers={"authorization": f"Bearer {viewer}"}).status_code == 403
    assert httpx.get(f"{api_url}/v1/routes").status_code == 401
    routes = httpx.get(f"{api_url}/v1/routes", headers={"authorization": f"Bearer {admin}"})
    assert routes.status_code == 200 and len(routes.json()["services"]["echo"]["replicas"]) == 3
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "steadyserve.gateway.main", "--id", "remote", "--port", str(port),
         "--discovery", "controller", "--controller-url", api_url, "--admin-endpoint", f"unix:{tmp_path}/a.sock"],
        env={**os.environ, "STEADY_TOKEN": admin}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        def answer() -> tuple[int, bytes] | None:
            try:
                reply = httpx.post(f"http://127.0.0.1:{port}/echo/echo", json={"message": "from afar"})
            except httpx.TransportError:
                return None
            return (reply.status_code, reply.content) if reply.status_code == 200 else None
        assert wait_for(answer, 60, "the remote gateway to route") == (200, b'{"message":"from afar"}')
        assert str(admin) not in " ".join(psutil.Process(gateway.pid).cmdline())  # the token is not on its command line
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)


def test_losing_a_node_under_load_fails_no_idempotent_call_and_its_replica_comes_back_elsewhere(instance, cluster):
    replicas = _ready(instance)
    by_node = {r["node"]: r for r in replicas}
    lost = next(n for n in cluster.worker_nodes_list if n.node_id in by_node)
    with LoadStream(instance.port, "/echo/echo", {"message": "node loss"}, threads=2) as load:
        wait_for(lambda: load.ok >= 20, 60, "calls before the loss")
        cluster.remove_node(lost, allow_graceful=False)
        wait_for(lambda: lost.node_id not in _live_nodes(), 60, "Ray to see the node gone")
        wait_for(lambda: len(_ready(instance)) == 3 and lost.node_id not in {r["node"] for r in _ready(instance)},
                 120, "three ready replicas on the surviving nodes")
        done = load.ok
        wait_for(lambda: load.ok >= done + 20, 60, "calls after the replacement")
    assert load.failures == []
    assert {r["node"] for r in _ready(instance)} <= _live_nodes()
    lost_replica = by_node[lost.node_id]["id"]
    assert any(e["subject"] == lost_replica and "Ray" in e["message"] for e in instance.events())


@pytest.mark.parametrize(("address", "message"), [
    ("127.0.0.1:{port}", "cannot reach the Ray cluster at 127.0.0.1:{port}"),
    ("ray://127.0.0.1:{port}", "cannot reach the Ray cluster at ray://127.0.0.1:{port}"),
    ("", "--ray-address needs the cluster's address"),
    ("nonsense", "expected HOST:PORT, ray://HOST:PORT or auto"),
])
def test_a_ray_address_nothing_answers_at_fails_at_once_naming_it(tmp_path, address, message):
    port = free_port()
    spec = tmp_path / "steady.yaml"
    spec.write_text(yaml.safe_dump({"deployments": {"echo": {"service": str(ECHO)}}}))
    result = run_cli("up", "-f", str(spec), "--ray-address", address.format(port=port), "--port", str(free_port()),
                     "--api-port", "0", "--no-auth", "--state-dir", str(tmp_path / "state"), timeout_s=120)
    assert result.returncode != 0 and message.format(port=port) in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
