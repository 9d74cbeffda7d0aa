"""What Prometheus (the Prometheus Operator) needs: ServiceMonitors and a PrometheusRule per deployment (pure)."""

from __future__ import annotations

from typing import Any

from ..alerting.export import DeploymentAlerting, rule_groups
from .common import metadata, selector

METRICS_TOKEN_SECRET = "steady-metrics-token"  # a viewer token (key `token`): the gateways' /metrics needs one


def replica_monitor(deployment: str, namespace: str | None) -> dict[str, Any]:
    """Each replica pod's own metrics, from its operations port (no credential needed, no handler there)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": metadata(f"{deployment}-replicas", deployment, "replica", namespace),
        "spec": {"selector": {"matchLabels": selector(deployment, "replica")},
                 "endpoints": [{"port": "ops", "path": "/metrics", "interval": "15s"}]},
    }


def gateway_monitor(namespace: str | None, auth_required: bool) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"port": "http", "path": "/metrics", "interval": "15s"}
    if auth_required:
        endpoint["authorization"] = {"type": "Bearer",
                                     "credentials": {"name": METRICS_TOKEN_SECRET, "key": "token"}}
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": metadata("steady-gateway", "steady-gateway", "gateway", namespace),
        "spec": {"selector": {"matchLabels": selector("steady-gateway", "gateway")}, "endpoints": [endpoint]},
    }


def prometheus_rule(deployment: str, alerting: DeploymentAlerting, namespace: str | None) -> dict[str, Any]:
    """The deployment's alerts (built-in and its own) and SLO burn-rate rules, as `steady up` evaluates them."""
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": metadata(f"steady-{deployment}", deployment, "replica", namespace),
        "spec": rule_groups({deployment: alerting}),
    }
