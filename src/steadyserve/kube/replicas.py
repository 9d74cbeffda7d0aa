"""A deployment's replicas on Kubernetes: Deployment, headless Service, PodDisruptionBudget, HPA (pure)."""

from __future__ import annotations

import math
from typing import Any

from ..autoscaling.settings import ScalingRule
from ..control.config import DeploymentConfig
from ..control.environment import BLAS_THREAD_VARS
from ..control.launch import REPLICA_MODULE, replica_args
from ..control.secrets import SECRETS_DIR_VAR
from ..errors import ConfigError
from ..replica.credential import KEY_ENV
from .common import (
    OPS_PORT,
    POD_SECURITY,
    PRESTOP_S,
    REPLICA_PORT,
    RESTRICTED_CONTAINER,
    SECRETS_MOUNT,
    headless_service,
    http_probe,
    labels,
    metadata,
    replica_key_secret,
    secrets_secret,
    selector,
    whole_seconds,
)

COMPONENT = "replica"


def termination_grace_s(dep: DeploymentConfig, grace_s: float) -> int:
    """preStop, then the replica's own drain (its in-flight calls may run handler_timeout_s), then a margin."""
    return PRESTOP_S + whole_seconds(dep.drain_grace_s(grace_s)) + 5


def container_args(dep: DeploymentConfig, target: str, grace_s: float, revision: int) -> list[str]:
    args = replica_args(dep.model_copy(update={"target": target}), "$(POD_NAME)", grace_s, revision)
    return [*args, "--endpoint", f"tcp:0.0.0.0:{REPLICA_PORT}", "--ops-port", str(OPS_PORT)]


def _env(dep: DeploymentConfig) -> list[dict[str, Any]]:
    spec = dep.spec
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": KEY_ENV, "valueFrom": {"secretKeyRef": {"name": replica_key_secret(dep.name), "key": "key"}}},
        *({"name": name, "value": "1"} for name in BLAS_THREAD_VARS),  # as locally: one thread per call
        # Kubernetes expands $(VAR) in values: `$$` keeps a `$` as written (no other variable leaks in).
        *({"name": name, "value": value.replace("$", "$$")} for name, value in sorted(spec.env.items())),
        *({"name": name, "valueFrom": {"secretKeyRef": {"name": secrets_secret(dep.name), "key": name}}}
          for name, ref in sorted(spec.secrets.items()) if ref.mount == "env"),
    ]
    if any(ref.mount == "file" for ref in spec.secrets.values()):
        env.append({"name": SECRETS_DIR_VAR, "value": SECRETS_MOUNT})
    return env


def _resources(dep: DeploymentConfig) -> dict[str, Any]:
    res = dep.spec.resources
    if res.gpus and res.gpus != int(res.gpus):
        raise ConfigError(f"deployment {dep.name!r}: resources.gpus {res.gpus:g}: Kubernetes schedules whole GPUs")
    requests: dict[str, str] = {"cpu": f"{int(round(res.cpus * 1000))}m"} if res.cpus else {}
    limits: dict[str, str] = {}
    if res.memory_mb is not None:
        requests["memory"] = limits["memory"] = f"{res.memory_mb}Mi"
    if res.gpus:
        limits["nvidia.com/gpu"] = str(int(res.gpus))
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def deployment(dep: DeploymentConfig, *, image: str, target: str, revision: int, grace_s: float,
               namespace: str | None) -> dict[str, Any]:
    spec = dep.spec
    health, rollout = spec.health, spec.rollout
    low, _ = spec.replica_bounds
    pod_labels = {**labels(dep.name, COMPONENT), "steadyserve.dev/revision": str(revision)}
    container: dict[str, Any] = {
        "name": "replica", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", REPLICA_MODULE], "args": container_args(dep, target, grace_s, revision),
        "ports": [{"name": "http", "containerPort": REPLICA_PORT}, {"name": "ops", "containerPort": OPS_PORT}],
        "env": _env(dep),
        # Ready (setup done) within startup_timeout_s; then alive and ready as the local supervisor judges.
        "startupProbe": http_probe("/readyz", "ops", 1, whole_seconds(health.probe_timeout_s),
                                   whole_seconds(health.startup_timeout_s)),
        "livenessProbe": http_probe("/livez", "ops", 2, whole_seconds(health.probe_timeout_s),
                                    health.failure_threshold),
        "readinessProbe": http_probe("/readyz", "ops", 1, whole_seconds(health.probe_timeout_s), 1),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_S}}},
        "securityContext": RESTRICTED_CONTAINER,
    }
    resources = _resources(dep)
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": termination_grace_s(dep, grace_s),
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "securityContext": POD_SECURITY,
        # One node's loss takes as few replicas as it can: spread over nodes (strictly), then zones.
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": selector(dep.name, COMPONENT)}},
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": selector(dep.name, COMPONENT)}}],
        "containers": [container],
    }
    files = sorted(name for name, ref in spec.secrets.items() if ref.mount == "file")
    if files:
        container["volumeMounts"] = [{"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}]
        pod["volumes"] = [{"name": "secrets", "secret": {
            "secretName": secrets_secret(dep.name), "defaultMode": 0o400,
            "items": [{"key": name, "path": name} for name in files]}}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(dep.name, dep.name, COMPONENT, namespace),
        "spec": {
            # An autoscaled deployment's count is its HPA's: a re-apply must not reset it.
            **({} if spec.autoscaled else {"replicas": max(1, low)}),
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": selector(dep.name, COMPONENT)},
            # As our rolling update: new pods first (max_surge), none taken down before its successor is ready.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": rollout.max_surge, "maxUnavailable": 0}},
            "minReadySeconds": int(rollout.bake_s),
            "progressDeadlineSeconds": whole_seconds(rollout.ready_deadline_s + health.startup_timeout_s, 60),
            "template": {"metadata": {"labels": pod_labels}, "spec": pod},
        },
    }


def headless(dep: DeploymentConfig, namespace: str | None) -> dict[str, Any]:
    """Ready pods' addresses in DNS: the gateways' replica discovery, and the scrape target."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(headless_service(dep.name), dep.name, COMPONENT, namespace),
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": False,
                 "selector": selector(dep.name, COMPONENT),
                 "ports": [{"name": "http", "port": REPLICA_PORT, "targetPort": "http"},
                           {"name": "ops", "port": OPS_PORT, "targetPort": "ops"}]},
    }


def disruption_budget(dep: DeploymentConfig, namespace: str | None) -> dict[str, Any]:
    """Voluntary evictions (node drains) take one replica at a time; a crash-looping one never blocks them."""
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": metadata(dep.name, dep.name, COMPONENT, namespace),
        "spec": {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                 "selector": {"matchLabels": selector(dep.name, COMPONENT)}},
    }


# Our autoscaling metric -> the HPA's (inflight and rps from the replicas' own metrics, queue from the gateways';
# prometheus-adapter serves them: see the rules `steady export kubernetes` writes next to the manifests).
CUSTOM_METRICS = {"inflight": "steady_handler_inflight_calls", "rps": "steady_handler_calls_per_second",
                  "queue": "steady_queued_requests"}


def _metric(dep: DeploymentConfig) -> dict[str, Any]:
    settings = dep.spec.scaling
    target = settings.target if settings.target is not None else {"inflight": 2.0, "cpu": 70.0, "queue": 1.0}[
        settings.metric]
    if settings.metric == "cpu":
        return {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": int(round(target))}}}
    value = {"type": "AverageValue", "averageValue": _quantity(target)}
    if settings.metric == "queue":
        return {"type": "External", "external": {
            "metric": {"name": CUSTOM_METRICS["queue"], "selector": {"matchLabels": {"deployment": dep.name}}},
            "target": value}}
    return {"type": "Pods", "pods": {"metric": {"name": CUSTOM_METRICS[settings.metric]}, "target": value}}


def _quantity(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{int(round(value * 1000))}m"


def _rule(rule: ScalingRule, stabilization_s: float) -> dict[str, Any]:
    period = min(1800, whole_seconds(rule.period_s))
    policies = []
    if rule.max_replicas is not None:
        policies.append({"type": "Pods", "value": rule.max_replicas, "periodSeconds": period})
    if rule.max_percent is not None:
        policies.append({"type": "Percent", "value": max(1, math.ceil(rule.max_percent)), "periodSeconds": period})
    out: dict[str, Any] = {"stabilizationWindowSeconds": int(round(stabilization_s))}
    if policies:
        out |= {"selectPolicy": "Max", "policies": policies}  # as ours: the larger of the two limits
    return out


def autoscaler(dep: DeploymentConfig, namespace: str | None) -> dict[str, Any] | None:
    spec = dep.spec
    if not spec.autoscaled:
        return None
    low, high = spec.replica_bounds
    settings = spec.scaling
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(dep.name, dep.name, COMPONENT, namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep.name},
            "minReplicas": max(1, low),  # the HPA does not scale to zero (KEDA or Knative do)
            "maxReplicas": high,
            "metrics": [_metric(dep)],
            "behavior": {"scaleUp": _rule(settings.scale_up, settings.scale_up.stabilization_s),
                         "scaleDown": _rule(settings.scale_down, settings.scale_down.stabilization_s)},
        },
    }
