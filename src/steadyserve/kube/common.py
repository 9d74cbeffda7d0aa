"""Names, labels and small helpers shared by the manifest builders."""

from __future__ import annotations

import math
from typing import Any

PART_OF = "steadyserve"
REPLICA_PORT = 8000
OPS_PORT = 8001
GATEWAY_PORT = 8080
PRESTOP_S = 5  # a leaving pod's address is out of DNS and the gateways' tables before it drains
DNS_INTERVAL_S = 2.0
SECRETS_MOUNT = "/var/run/steady/secrets"
APP_DIR = "/app"


def labels(deployment: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": deployment, "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": "steady-export"}


def selector(deployment: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": deployment, "app.kubernetes.io/component": component}


def metadata(name: str, deployment: str, component: str, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(deployment, component)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def replica_key_secret(deployment: str) -> str:
    """The Kubernetes Secret (key ``key``) holding the credential the gateways present to its replicas."""
    return f"steady-{deployment}-replica-key"


def secrets_secret(deployment: str) -> str:
    """The Kubernetes Secret holding the deployment's own secrets (one key per secret name)."""
    return f"steady-{deployment}-secrets"


def headless_service(deployment: str) -> str:
    return f"{deployment}-replicas"


def whole_seconds(value_s: float, least: int = 1) -> int:
    return max(least, math.ceil(value_s))


def http_probe(path: str, port: str, period_s: int, timeout_s: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period_s, "timeoutSeconds": timeout_s,
            "failureThreshold": failures}


RESTRICTED_CONTAINER = {  # the "restricted" Pod Security Standard
    "allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"}}
