"""The steadyserve gateway on Kubernetes: its own Deployment (two pods or more), finding replica pods
through each deployment's headless Service, with the routing settings in a ConfigMap (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..control.config import DeploymentConfig
from ..control.publish import build_table
from ..control.spec import GatewaySpec
from ..gateway.discovery import credential_env
from ..gateway.routes import RoutingTable
from .common import (
    DNS_INTERVAL_S,
    GATEWAY_PORT,
    POD_SECURITY,
    PRESTOP_S,
    REPLICA_PORT,
    RESTRICTED_CONTAINER,
    http_probe,
    labels,
    metadata,
    replica_key_secret,
    selector,
)

NAME = "steady-gateway"
COMPONENT = "gateway"
ROUTES_CONFIGMAP = "steady-gateway-routes"
TOKENS_SECRET = "steady-gateway-tokens"  # key tokens.json: {id: {name, role, digest, ...}} (digests, not tokens)
ROUTES_DIR = "/etc/steady/routes"
TOKENS_DIR = "/etc/steady/tokens"
MIN_PODS = 2


def pods(gateway: GatewaySpec) -> int:
    return max(MIN_PODS, gateway.processes)


def routes_template(deployments: Sequence[DeploymentConfig], gateway: GatewaySpec, auth_required: bool,
                    default_deployment: str | None = None) -> RoutingTable:
    """What the controller would publish, less the replicas (DNS finds them) and tokens (a Secret holds them)."""
    return build_table(version=1, default_deployment=default_deployment, deployments=deployments, ready=(),
                       canaries={}, auth_required=auth_required, tokens=(), gateway_processes=pods(gateway))


def routes_configmap(table: RoutingTable, namespace: str | None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(ROUTES_CONFIGMAP, NAME, COMPONENT, namespace),
            "data": {"routes.json": table.model_dump_json(indent=1)}}


def _args(gateway: GatewaySpec, grace_s: float, auth_required: bool) -> list[str]:
    args = ["--id", "$(POD_NAME)", "--host", "0.0.0.0", "--port", str(GATEWAY_PORT),
            "--routes", f"{ROUTES_DIR}/routes.json", "--discovery", "dns", "--replica-port", str(REPLICA_PORT),
            "--dns-suffix=-replicas", "--dns-interval-s", f"{DNS_INTERVAL_S:g}",
            "--admin-endpoint", "unix:/tmp/steady-admin.sock", "--max-body-bytes", str(gateway.max_body_bytes),
            "--grace-s", f"{grace_s:g}", "--metrics-dir", "/tmp/metrics"]
    if auth_required:
        args += ["--tokens-file", f"{TOKENS_DIR}/tokens.json"]
    for name, value in gateway.http.model_dump().items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args


def deployment(deployments: Sequence[DeploymentConfig], gateway: GatewaySpec, *, image: str, grace_s: float,
               auth_required: bool, namespace: str | None) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    env += [{"name": credential_env(dep.name), "valueFrom": {"secretKeyRef": {
        "name": replica_key_secret(dep.name), "key": "key"}}} for dep in deployments]
    mounts = [{"name": "routes", "mountPath": ROUTES_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "routes", "configMap": {"name": ROUTES_CONFIGMAP}},
                                     {"name": "tmp", "emptyDir": {}}]
    if auth_required:
        mounts.append({"name": "tokens", "mountPath": TOKENS_DIR, "readOnly": True})
        volumes.append({"name": "tokens", "secret": {"secretName": TOKENS_SECRET, "defaultMode": 0o400}})
    container = {
        "name": "gateway", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "steadyserve.gateway.main"], "args": _args(gateway, grace_s, auth_required),
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT}],
        "env": env, "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}},
        # Alive and ready while it answers: a gateway with no replica behind a deployment still answers
        # its callers (a 503 naming the problem), which beats a refused connection.
        "livenessProbe": http_probe("/v2/health/live", "http", 5, 2, 3),
        "readinessProbe": http_probe("/v2/health/live", "http", 2, 2, 1),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_S}}},
        "securityContext": RESTRICTED_CONTAINER,
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(NAME, NAME, COMPONENT, namespace),
        "spec": {
            "replicas": pods(gateway),
            "selector": {"matchLabels": selector(NAME, COMPONENT)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels(NAME, COMPONENT)}, "spec": {
                "terminationGracePeriodSeconds": PRESTOP_S + int(grace_s) + 5,
                "automountServiceAccountToken": False, "enableServiceLinks": False,
                "securityContext": POD_SECURITY,
                "topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": selector(NAME, COMPONENT)}}],
                "containers": [container], "volumes": volumes}},
        },
    }


def service(namespace: str | None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(NAME, NAME, COMPONENT, namespace),
            "spec": {"selector": selector(NAME, COMPONENT),
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def disruption_budget(namespace: str | None) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(NAME, NAME, COMPONENT, namespace),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector(NAME, COMPONENT)}}}
