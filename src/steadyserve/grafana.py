"""A Grafana dashboard on the platform's metrics (``steady export grafana``).

Every panel queries the metrics the gateway's ``/metrics`` exposes (names from
metrics/catalog.py), through a Prometheus data source chosen on import, for the
deployments picked in the ``deployment`` variable.
"""

from __future__ import annotations

from typing import Any

from .metrics import catalog

DEPLOYMENTS = 'deployment=~"$deployment"'
RATE = "[$__rate_interval]"


def _panel(title: str, targets: list[tuple[str, str]], unit: str, x: int, y: int, width: int = 12) -> dict[str, Any]:
    return {
        "type": "timeseries", "title": title, "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i),
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, (expr, legend) in enumerate(targets)],
    }


def _quantile(q: float, histogram: str, by: str = "") -> str:
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile({q}, sum by ({group}) (rate({histogram}_bucket{{{DEPLOYMENTS}}}{RATE})))"


def dashboard() -> dict[str, Any]:
    requests = catalog.REQUESTS.exposed_name
    admission = catalog.ADMISSION.exposed_name
    panels = [
        _panel("Calls per second by status code",
               [(f"sum by (code) (rate({requests}{{{DEPLOYMENTS}}}{RATE}))", "{{code}}")], "reqps", 0, 0),
        _panel("Latency at the gateway", [
            (_quantile(0.5, catalog.REQUEST_DURATION.name), "p50"),
            (_quantile(0.99, catalog.REQUEST_DURATION.name), "p99")], "s", 12, 0),
        _panel("Error ratio (5xx)", [
            (f'sum(rate({requests}{{{DEPLOYMENTS},code=~"5.."}}{RATE})) / sum(rate({requests}{{{DEPLOYMENTS}}}{RATE}))',
             "errors")], "percentunit", 0, 8),
        _panel("Shed ratio (admission control)", [
            (f'sum(rate({admission}{{{DEPLOYMENTS},decision="shed"}}{RATE})) / sum(rate({admission}{{{DEPLOYMENTS}}}{RATE}))',
             "shed")], "percentunit", 12, 8),
        _panel("Replicas by state",
               [(f"sum by (state) ({catalog.REPLICAS.name}{{{DEPLOYMENTS}}})", "{{state}}")], "short", 0, 16),
        _panel("In flight and queued at the gateways", [
            (f"sum({catalog.INFLIGHT.name}{{{DEPLOYMENTS}}})", "in flight"),
            (f"sum({catalog.QUEUED.name}{{{DEPLOYMENTS}}})", "queued")], "short", 12, 16),
        _panel("Resident memory per replica", [
            (f"{catalog.REPLICA_MEMORY.name}{{{DEPLOYMENTS}}}", "{{deployment}} {{replica}}"),
            (f"max by (deployment) ({catalog.REPLICA_MEMORY_LIMIT.name}{{{DEPLOYMENTS}}})", "limit {{deployment}}")],
               "bytes", 0, 24),
        _panel("CPU per replica",
               [(f"rate({catalog.REPLICA_CPU.exposed_name}{{{DEPLOYMENTS}}}{RATE})", "{{deployment}} {{replica}}")],
               "percentunit", 12, 24),
        _panel("Handler time (p99) by revision",
               [(_quantile(0.99, catalog.HANDLER_DURATION.name, "revision"), "revision {{revision}}")], "s", 0, 32),
        _panel("Restarts, retries and ejections", [
            (f"sum(increase({catalog.RESTARTS.exposed_name}{{{DEPLOYMENTS}}}[1h]))", "restarts (1h)"),
            (f"sum(rate({catalog.RETRIES.exposed_name}{{{DEPLOYMENTS}}}{RATE}))", "retries/s"),
            (f"sum(rate({catalog.EJECTIONS.exposed_name}{{{DEPLOYMENTS}}}{RATE}))", "ejections/s")], "short", 12, 32),
        _panel("Mean batch size", [
            (f"sum(rate({catalog.BATCH_SIZE.name}_sum{{{DEPLOYMENTS}}}{RATE})) /"
             f" sum(rate({catalog.BATCH_SIZE.name}_count{{{DEPLOYMENTS}}}{RATE}))", "calls per batch")], "short", 0, 40),
        _panel("Controller tick (p99)", [
            (f"histogram_quantile(0.99, sum by (le) (rate({catalog.TICK_DURATION.name}_bucket{RATE})))", "p99")],
               "s", 12, 40),
    ]
    return {
        "title": "steadyserve", "uid": "steadyserve", "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "tags": ["steadyserve"],
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "deployment", "type": "query", "label": "deployment", "multi": True, "includeAll": True,
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": f"label_values({requests}, deployment)", "refresh": 2, "current": {}},
        ]},
        "panels": panels,
    }
