"""`steady export kubernetes`: every manifest checked offline against the Kubernetes schema
(kubernetes-validate --strict), the PrometheusRules by promtool, and the exported commands run
for real: a replica and a gateway started with the manifests' own command lines, the gateway
finding the replica by name resolution as it does through a headless Service.

No Kubernetes API server can run on our machines: nothing here is applied to a cluster; where
kubectl is installed, `kubectl apply --dry-run=client` reads the manifests too.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from conftest import EXAMPLES, FIXTURES, free_port, run_cli, wait_for

pytestmark = pytest.mark.integration
KUBERNETES_VERSION = "1.37.0"
SECRET_VALUE = "do-not-ship-me-7f3a"


def _export(tmp_path: Path, spec: dict[str, Any], *args: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    project = tmp_path / "project"
    if not project.exists():
        shutil.copytree(EXAMPLES / "echo", project / "echo")
        shutil.copytree(FIXTURES / "nosy", project / "nosy")
    (project / "steady.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "k8s"
    env_before = os.environ.get("API_KEY")
    os.environ["API_KEY"] = SECRET_VALUE  # the deploying user's secret: must never reach a file
    try:
        result = run_cli("export", "kubernetes", "-f", str(project / "steady.yaml"), "-o", str(out),
                         "--image", "registry.example/app:1", *args)
    finally:
        if env_before is None:
            os.environ.pop("API_KEY", None)
        else:
            os.environ["API_KEY"] = env_before
    return out, result


SPEC: dict[str, Any] = {
    "deployments": {
        "echo": {"service": "echo/service.py", "replicas": {"min": 2, "max": 8},
                 "autoscaling": {"metric": "inflight", "target": 3,
                                 "scale_up": {"stabilization_s": 10, "period_s": 30, "max_replicas": 2},
                                 "scale_down": {"stabilization_s": 120, "max_percent": 50}},
                 "resources": {"cpus": 0.5, "memory_mb": 512, "gpus": 1},
                 "health": {"startup_timeout_s": 60, "failure_threshold": 4},
                 "handler_timeout_s": 20,
                 "env": {"MODE": "fast"},
                 "secrets": {"API_KEY": {"from_env": "API_KEY"}, "TLS_KEY": {"from_env": "API_KEY", "mount": "file"}},
                 "slo": {"availability": 0.999}},
        "nosy": {"service": "nosy/service.py", "replicas": {"min": 1, "max": 3},
                 "autoscaling": {"metric": "cpu", "target": 60}},
        "plain": {"service": "echo/service.py", "replicas": 3},
    },
    "gateway": {"processes": 3},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    out, result = _export(tmp_path_factory.mktemp("kube"), SPEC)
    assert result.returncode == 0, result.stderr
    docs = {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(out.glob("*.yaml"))}
    return out, docs


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def test_every_manifest_validates_strictly_against_the_kubernetes_schema(exported):
    out, docs = exported
    assert set(docs) == {"echo.yaml", "nosy.yaml", "plain.yaml", "steady-gateway.yaml"}
    checked = 0
    for documents in docs.values():
        for doc in documents:
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # the Prometheus Operator's kinds are not in the Kubernetes schema: checked below
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked += 1
    assert checked == 3 * 3 + 2 + 4  # Deployment, Service, PDB each; 2 HPAs; the gateway's four


def test_the_prometheus_rules_pass_promtool(exported, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package; `make test` installs it)")
    _, docs = exported
    for name in ("echo.yaml", "nosy.yaml", "plain.yaml"):
        rule = _kind(docs[name], "PrometheusRule")
        path = tmp_path / f"{name}.rules.yaml"
        path.write_text(yaml.safe_dump(rule["spec"]))
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    echo_rules = _kind(docs["echo.yaml"], "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert any("record" in r for r in echo_rules) and any(r.get("alert") == "SteadyAvailabilityBudgetBurnFast" for r in echo_rules)


def test_service_monitors_scrape_the_replicas_ops_port_and_the_gateways_metrics_with_a_token(exported):
    # No schema of the Prometheus Operator's CRDs is available offline: their shape is checked here.
    _, docs = exported
    replica = _kind(docs["echo.yaml"], "ServiceMonitor")
    service = _kind(docs["echo.yaml"], "Service")
    assert replica["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert replica["spec"]["endpoints"] == [{"port": "ops", "path": "/metrics", "interval": "15s"}]
    assert "ops" in {p["name"] for p in service["spec"]["ports"]}
    gateway = _kind(docs["steady-gateway.yaml"], "ServiceMonitor")["spec"]["endpoints"][0]
    assert gateway["port"] == "http" and gateway["authorization"]["credentials"] == {
        "name": "steady-metrics-token", "key": "token"}


def test_replicas_spread_over_nodes_probe_like_the_supervisor_and_drain_like_a_local_replica(exported):
    _, docs = exported
    deployment = _kind(docs["echo.yaml"], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    spread = pod["topologySpreadConstraints"][0]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"], spread["maxSkew"]) == (
        "kubernetes.io/hostname", "DoNotSchedule", 1)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 60
    assert container["livenessProbe"]["failureThreshold"] == 4
    pre_stop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_s = float(container["args"][container["args"].index("--grace-s") + 1])
    assert drain_s >= 20 + 1  # handler_timeout_s: a retiring replica never cuts a call short
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + drain_s
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                      "limits": {"memory": "512Mi", "nvidia.com/gpu": "1"}}
    budget = _kind(docs["echo.yaml"], "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1 and budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_the_autoscaler_carries_our_autoscaling_spec(exported):
    _, docs = exported
    hpa = _kind(docs["echo.yaml"], "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    assert "replicas" not in _kind(docs["echo.yaml"], "Deployment")["spec"]  # the HPA's to set, not a re-apply's
    assert _kind(docs["plain.yaml"], "Deployment")["spec"]["replicas"] == 3
    assert hpa["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "steady_handler_inflight_calls"},
                                                        "target": {"type": "AverageValue", "averageValue": "3"}}}]
    assert hpa["behavior"]["scaleUp"] == {"stabilizationWindowSeconds": 10, "selectPolicy": "Max",
                                          "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}]}
    assert hpa["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 120, "selectPolicy": "Max",
                                            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}]}
    cpu = _kind(docs["nosy.yaml"], "HorizontalPodAutoscaler")["spec"]["metrics"][0]
    assert cpu == {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                              "averageUtilization": 60}}}
    assert not [d for d in docs["plain.yaml"] if d["kind"] == "HorizontalPodAutoscaler"]  # a fixed count


def test_secrets_are_references_to_kubernetes_secrets_never_values(exported):
    out, docs = exported
    for path in out.iterdir():
        assert SECRET_VALUE not in path.read_text(), path.name
    container = _kind(docs["echo.yaml"], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "steady-echo-secrets", "key": "API_KEY"}}
    assert env["STEADY_REPLICA_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "steady-echo-replica-key"
    assert env["MODE"] == {"name": "MODE", "value": "fast"}
    volume = _kind(docs["echo.yaml"], "Deployment")["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["items"] == [{"key": "TLS_KEY", "path": "TLS_KEY"}]


def test_the_gateway_runs_its_own_pods_and_finds_every_deployments_replicas(exported):
    _, docs = exported
    gateway = _kind(docs["steady-gateway.yaml"], "Deployment")
    assert gateway["spec"]["replicas"] == 3  # gateway.processes, at least 2
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--discovery") + 1] == "dns"
    keys = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "secretKeyRef" in
            e.get("valueFrom", {})}
    assert keys == {f"STEADY_REPLICA_KEY_{n.upper()}": f"steady-{n}-replica-key" for n in ("echo", "nosy", "plain")}
    table = json.loads(_kind(docs["steady-gateway.yaml"], "ConfigMap")["data"]["routes.json"])
    assert table["auth_required"] is True and table["tokens"] == {}
    assert set(table["services"]) == {"echo", "nosy", "plain"}
    assert all(service["replicas"] == [] for service in table["services"].values())
    assert table["services"]["echo"]["handlers"] == {"echo": {"idempotent": True}}
    assert _kind(docs["steady-gateway.yaml"], "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_a_service_outside_the_spec_directory_cannot_be_built_into_the_image(tmp_path):
    _, result = _export(tmp_path, {"deployments": {"echo": {"service": str(EXAMPLES / "echo" / "service.py")}}})
    assert result.returncode != 0 and "outside" in result.stderr and "spec's directory" in result.stderr


def test_fractional_gpus_are_refused_for_kubernetes(tmp_path):
    _, result = _export(tmp_path, {"deployments": {"echo": {"service": "echo/service.py",
                                                            "resources": {"gpus": 0.5}}}})
    assert result.returncode != 0 and "Kubernetes schedules whole GPUs" in result.stderr


def test_kubectl_reads_every_manifest_where_kubectl_is_installed(exported, tmp_path):
    """`kubectl kustomize` parses every object offline; `kubectl apply --dry-run=client` asks an API
    server for the kinds, and none can run on our machines, so it runs only where one answers."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here")
    out, docs = exported
    copy = tmp_path / "k8s"
    shutil.copytree(out, copy)
    (copy / "kustomization.yaml").write_text(yaml.safe_dump({"resources": sorted(docs)}))
    built = subprocess.run([kubectl, "kustomize", str(copy)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert sorted(d["kind"] for d in yaml.safe_load_all(built.stdout) if d) == sorted(
        d["kind"] for documents in docs.values() for d in documents)
    dry = subprocess.run([kubectl, "apply", "--dry-run=client", "-f", str(out)], capture_output=True, text=True)
    if dry.returncode != 0 and ("connection refused" in dry.stderr or "unable to recognize" in dry.stderr):
        pytest.skip("kubectl apply --dry-run=client needs an API server's discovery; none runs here")
    assert dry.returncode == 0, dry.stderr


# --- the exported commands, run ---------------------------------------------------------------
def _command(doc: dict[str, Any], env: dict[str, str], swap: dict[str, str]) -> list[str]:
    """A container's command line as the kubelet would run it: $(VAR) expanded, ports swapped for free ones."""
    container = doc["spec"]["template"]["spec"]["containers"][0]
    args = []
    for arg in container["args"]:
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        args.append(swap.get(arg, arg))
    return [sys.executable if container["command"][0] == "python" else container["command"][0],
            *container["command"][1:], *args]


@pytest.fixture
def own_hosts_file() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private /etc/hosts (the headless Service's DNS stand-in)")
    yield Path("/etc/hosts")


def test_the_exported_gateway_and_replica_commands_serve_a_call_end_to_end(tmp_path, own_hosts_file):
    """Kubernetes' part (scheduling, DNS of the headless Service) is stood in for: the replica runs on
    this machine and the gateway, in a mount namespace of its own, resolves `echo-replicas` from a hosts
    file. Everything else is the manifests' own command lines, environment and files."""
    spec = {"deployments": {"echo": {"service": "echo/service.py", "replicas": 1}}}
    state = tmp_path / "state"
    token = run_cli("token", "create", "--role", "invoker", "--name", "caller", "--state-dir", str(state)).stdout.strip()
    assert token
    out, result = _export(tmp_path, spec, "--tokens-from", str(state))
    assert result.returncode == 0, result.stderr
    assert (out / "gateway-tokens").stat().st_mode & 0o777 == 0o600
    tokens = json.loads((out / "gateway-tokens").read_text())
    assert [(t["name"], t["role"], len(t["digest"])) for t in tokens.values()] == [("caller", "invoker", 64)]
    assert token not in (out / "gateway-tokens").read_text()  # digests only
    assert "--from-file=tokens.json=" in (out / "NEXT_STEPS.md").read_text()
    replica_doc = _kind(list(yaml.safe_load_all((out / "echo.yaml").read_text())), "Deployment")
    gateway_docs = list(yaml.safe_load_all((out / "steady-gateway.yaml").read_text()))
    gateway_doc = _kind(gateway_docs, "Deployment")
    key = "k" * 43
    replica_port, ops_port, gateway_port = free_port(), free_port(), free_port()
    project = tmp_path / "project"
    replica_env = {**os.environ, "POD_NAME": "echo-7d9f-x2", "STEADY_REPLICA_KEY": key, "PYTHONPATH": str(project)}
    replica_cmd = _command(replica_doc, {"POD_NAME": "echo-7d9f-x2"},
                           {"tcp:0.0.0.0:8000": f"tcp:127.0.0.1:{replica_port}", "8001": str(ops_port),
                            "/app/echo/service.py:Echo": f"{project}/echo/service.py:Echo"})
    config_dir = tmp_path / "etc"
    (config_dir / "routes").mkdir(parents=True)
    (config_dir / "routes" / "routes.json").write_text(_kind(gateway_docs, "ConfigMap")["data"]["routes.json"])
    shutil.copy(out / "gateway-tokens", config_dir / "tokens.json")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 echo-replicas\n")
    gateway_cmd = _command(gateway_doc, {"POD_NAME": "steady-gateway-abc"}, {
        "8080": str(gateway_port), "8000": str(replica_port), "/etc/steady/routes/routes.json":
        str(config_dir / "routes" / "routes.json"), "/etc/steady/tokens/tokens.json": str(config_dir / "tokens.json"),
        "unix:/tmp/steady-admin.sock": f"unix:{tmp_path}/admin.sock", "/tmp/metrics": str(tmp_path / "metrics")})
    gateway_env = {**os.environ, "STEADY_REPLICA_KEY_ECHO": key}
    logs = tmp_path / "replica.log", tmp_path / "gateway.log"
    replica = subprocess.Popen(replica_cmd, env=replica_env, stdout=logs[0].open("wb"), stderr=subprocess.STDOUT)
    gateway = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts), *gateway_cmd],
        env=gateway_env, stdout=logs[1].open("wb"), stderr=subprocess.STDOUT)
    try:
        # The kubelet's probes, on the operations port: no credential needed there, no handler reachable.
        wait_for(lambda: _get(ops_port, "/readyz") == 200, 60, "the replica's readiness probe")
        assert _get(ops_port, "/livez") == 200 and _get(ops_port, "/echo") == 404
        assert b"steady_handler" in httpx.get(f"http://127.0.0.1:{ops_port}/metrics").content
        # The replica's port itself takes no call without the credential.
        assert httpx.post(f"http://127.0.0.1:{replica_port}/echo", json={"message": "x"}).status_code == 401

        def call(headers: dict[str, str]) -> httpx.Response | None:
            assert gateway.poll() is None, f"the gateway exited: {logs[1].read_text()[-3000:]}"
            try:
                return httpx.post(f"http://127.0.0.1:{gateway_port}/echo/echo", json={"message": "via dns"},
                                  headers=headers, timeout=10)
            except httpx.TransportError:
                return None

        answer = wait_for(lambda: (r := call({"authorization": f"Bearer {token}"})) is not None
                          and r.status_code == 200 and r, 60,
                          f"a call through the exported gateway; its log: {logs[1].read_text()[-3000:]}")
        assert answer.json() == {"message": "via dns"} and answer.headers["x-steady-replica"] == "echo-7d9f-x2"  # the pod, by name
        refused = call({})
        assert refused is not None and refused.status_code == 401  # auth holds on Kubernetes too
        assert httpx.get(f"http://127.0.0.1:{gateway_port}/v2/health/live").status_code == 200  # its probe
    finally:
        for proc in (gateway, replica):
            proc.send_signal(signal.SIGTERM)
        for proc in (gateway, replica):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _get(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def test_the_dockerfile_builds_the_spec_directory_into_the_image_as_a_non_root_user(tmp_path):
    from steadyserve import __version__

    spec = {"deployments": {"echo": {"service": "echo/service.py"}}}
    out, result = _export(tmp_path, spec)
    assert result.returncode == 0, result.stderr
    lines = [line for line in (out / "Dockerfile").read_text().splitlines() if line and not line.startswith("#")]
    keywords = [line.split()[0] for line in lines]
    assert keywords[0] == "FROM" and set(keywords) <= {"FROM", "ENV", "ARG", "RUN", "COPY", "WORKDIR", "USER", "EXPOSE"}
    assert f'ARG STEADYSERVE="steadyserve=={__version__}"' in lines and 'RUN pip install "$STEADYSERVE"' in lines
    assert "COPY . /app" in lines and lines[-2:] == ["USER 10001:10001", "EXPOSE 8000 8001 8080"]
    assert not any("requirements.txt" in line for line in lines)  # the project has none
    assert ".steady" in (out / "Dockerfile.dockerignore").read_text().split()  # state never enters the image
    assert "k8s" in (out / "Dockerfile.dockerignore").read_text().split()  # nor the export (token digests)
    # The path every replica's --target names exists in the build context (the spec's directory).
    args = _kind(list(yaml.safe_load_all((out / "echo.yaml").read_text())), "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]["args"]
    target = args[args.index("--target") + 1]
    assert target == "/app/echo/service.py:Echo" and (tmp_path / "project" / "echo" / "service.py").is_file()
    (tmp_path / "project" / "requirements.txt").write_text("scikit-learn>=1.3\n")
    out, result = _export(tmp_path, spec)
    assert "RUN pip install -r /app/requirements.txt" in (out / "Dockerfile").read_text()


def test_secret_files_and_the_export_itself_stay_out_of_the_image(tmp_path):
    spec = {"deployments": {"echo": {"service": "echo/service.py", "secrets": {
        "DB_PASS": {"from_file": "conf/db.pass"}, "API_KEY": {"from_env": "API_KEY"}}}}}
    (tmp_path / "project" / "conf").mkdir(parents=True)
    (tmp_path / "project" / "conf" / "db.pass").write_text(SECRET_VALUE)
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "echo", project / "echo")
    (project / "steady.yaml").write_text(yaml.safe_dump(spec))
    out = project / "deploy" / "manifests"
    result = run_cli("export", "kubernetes", "-f", str(project / "steady.yaml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    ignored = (out / "Dockerfile.dockerignore").read_text().split()
    assert "conf/db.pass" in ignored and "deploy/manifests" in ignored
    steps = (out / "NEXT_STEPS.md").read_text()
    assert "--tokens-from" in steps and "steady token create --role invoker" in steps  # none exported yet
    assert "note: automatic rollback" in result.stderr
    for path in out.iterdir():
        assert SECRET_VALUE not in path.read_text()


def test_an_output_directory_that_cannot_be_written_is_a_clear_error(tmp_path):
    (tmp_path / "taken").write_text("a file, not a directory")
    out, _ = _export(tmp_path, {"deployments": {"echo": {"service": "echo/service.py"}}})
    for target, message in ((tmp_path / "taken", "is a file"), (tmp_path / "taken" / "k8s", "cannot write to")):
        result = run_cli("export", "kubernetes", "-f", str(tmp_path / "project" / "steady.yaml"), "-o", str(target))
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("deployment", "problem"), [
    ("gateway", "are the export's own objects"), ("steady-gateway", "are the export's own objects"),
    ("trailing-", "cannot end with '-'"),
])
def test_names_kubernetes_would_refuse_or_that_collide_with_the_gateway_are_refused(tmp_path, deployment, problem):
    _, result = _export(tmp_path, {"deployments": {deployment: {"service": "echo/service.py"}}})
    assert result.returncode != 0 and problem in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [("--namespace", "Bad_NS;touch /tmp/x"), ("--image", "app:1; rm -rf /")])
def test_a_namespace_or_image_that_is_not_one_is_refused(tmp_path, args):
    _, result = _export(tmp_path, {"deployments": {"echo": {"service": "echo/service.py"}}}, *args)
    assert result.returncode != 0 and args[0] in result.stderr


def test_env_values_reach_the_pod_as_written_and_never_expand_other_variables(tmp_path):
    spec = {"deployments": {"echo": {"service": "echo/service.py", "env": {
        "STOLEN": "$(STEADY_REPLICA_KEY)", "PASSWORDISH": "pa$$word"}}}}
    out, result = _export(tmp_path, spec)
    assert result.returncode == 0, result.stderr
    container = _kind(list(yaml.safe_load_all((out / "echo.yaml").read_text())), "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # Kubernetes turns `$$` into `$`: the pod sees "$(STEADY_REPLICA_KEY)" and "pa$$word", not the key.
    assert env["STOLEN"] == "$$(STEADY_REPLICA_KEY)" and env["PASSWORDISH"] == "pa$$$$word"


def test_files_are_never_written_through_a_symlink_and_tokens_are_private_even_when_overwritten(tmp_path):
    state = tmp_path / "state"
    run_cli("token", "create", "--role", "invoker", "--name", "caller", "--state-dir", str(state))
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "gateway-tokens").write_text("old")
    os.chmod(out / "gateway-tokens", 0o644)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (out / "echo.yaml").symlink_to(victim)
    _, result = _export(tmp_path, {"deployments": {"echo": {"service": "echo/service.py"}}}, "--tokens-from",
                        str(state))
    assert result.returncode != 0 and "cannot write to" in result.stderr and victim.read_text() == "untouched"
    (out / "echo.yaml").unlink()
    _, result = _export(tmp_path, {"deployments": {"echo": {"service": "echo/service.py"}}}, "--tokens-from",
                        str(state))
    assert result.returncode == 0, result.stderr
    assert (out / "gateway-tokens").stat().st_mode & 0o777 == 0o600 and "caller" in (out / "gateway-tokens").read_text()
