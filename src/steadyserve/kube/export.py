"""Every manifest of a spec, as the files `steady export kubernetes` writes (pure)."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from ..alerting.export import DeploymentAlerting
from ..control.config import DeploymentConfig
from ..control.spec import GatewaySpec
from ..errors import ConfigError
from . import gateway, image, monitoring, replicas
from .common import APP_DIR, headless_service, replica_key_secret, secrets_secret


@dataclass(frozen=True)
class ExportSettings:
    image: str
    namespace: str | None = None
    auth_required: bool = True
    grace_s: float = 10.0


def container_target(target: str, base_dir: Path) -> str:
    """``/abs/dir/service.py:Class`` as the image holds it: ``/app/<path from the spec's directory>:Class``."""
    path, sep, cls = target.partition(":")
    relative = os.path.relpath(path, base_dir)
    if relative.startswith(".."):
        raise ConfigError(f"{path} is outside {base_dir}: a service must lie in the spec's directory to be built"
                          " into the image (the Dockerfile copies that directory)")
    return f"{APP_DIR}/{Path(relative).as_posix()}{sep}{cls}"


NAMESPACE_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS-1123 label
IMAGE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")


def check_settings(deployments: Sequence[DeploymentConfig], settings: ExportSettings) -> None:
    """Names Kubernetes would refuse, or that would collide with the gateway's own objects, are refused here."""
    if settings.namespace is not None and not NAMESPACE_PATTERN.fullmatch(settings.namespace):
        raise ConfigError(f"--namespace {settings.namespace!r}: a Kubernetes namespace is lower-case letters, digits"
                          " and '-', starting and ending with a letter or digit")
    if not IMAGE_PATTERN.fullmatch(settings.image):
        raise ConfigError(f"--image {settings.image!r}: expected an image reference like registry.example/app:1")
    for dep in deployments:
        if dep.name.endswith("-"):
            raise ConfigError(f"deployment {dep.name!r}: a Kubernetes name cannot end with '-'; rename it")
        if dep.name.startswith("steady-") or dep.name == "gateway":
            raise ConfigError(f"deployment {dep.name!r}: names starting with 'steady-' (and 'gateway') are the"
                              " export's own objects (steady-gateway, its Secrets); rename it")


def to_yaml(documents: Sequence[Mapping[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(dict(d), sort_keys=False, width=10_000) for d in documents)


def deployment_documents(dep: DeploymentConfig, alerting: DeploymentAlerting, base_dir: Path,
                         settings: ExportSettings) -> list[dict[str, Any]]:
    ns = settings.namespace
    docs = [replicas.deployment(dep, image=settings.image, target=container_target(dep.target, base_dir),
                                revision=1, grace_s=settings.grace_s, namespace=ns),
            replicas.headless(dep, ns), replicas.disruption_budget(dep, ns)]
    hpa = replicas.autoscaler(dep, ns)
    if hpa is not None:
        docs.append(hpa)
    docs += [monitoring.replica_monitor(dep.name, ns), monitoring.prometheus_rule(dep.name, alerting, ns)]
    return docs


def gateway_documents(deployments: Sequence[DeploymentConfig], gw: GatewaySpec,
                      settings: ExportSettings) -> list[dict[str, Any]]:
    ns = settings.namespace
    table = gateway.routes_template(deployments, gw, settings.auth_required)
    return [gateway.routes_configmap(table, ns),
            gateway.deployment(deployments, gw, image=settings.image, grace_s=settings.grace_s,
                               auth_required=settings.auth_required, namespace=ns),
            gateway.service(ns), gateway.disruption_budget(ns),
            monitoring.gateway_monitor(ns, settings.auth_required)]


ADAPTER_RULES_FILE = "prometheus-adapter.rules"  # not .yaml: `kubectl apply -f DIR` takes only manifests
ADAPTER_RULES = """\
# prometheus-adapter rules for the HPAs' custom metrics (merge into the adapter's `rules:`).
rules:
  - seriesQuery: 'steady_handler_inflight_calls{namespace!="",pod!=""}'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
    metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
  - seriesQuery: 'steady_handler_calls_total{namespace!="",pod!=""}'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
    name: {matches: "steady_handler_calls_total", as: "steady_handler_calls_per_second"}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
externalRules:
  - seriesQuery: 'steady_queued_requests{deployment!=""}'
    resources: {overrides: {namespace: {resource: namespace}}}
    metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (deployment)'
"""


GATEWAY_FILE = "steady-gateway.yaml"  # no deployment is named steady-* (check_settings)
TOKENS_FILE = "gateway-tokens"  # no .json: `kubectl apply -f DIR` must not take it for a manifest


def next_steps(deployments: Sequence[DeploymentConfig], settings: ExportSettings, out_dir: Path,
               context_dir: Path, has_custom_metrics: bool, tokens_written: bool) -> str:
    ns = f" -n {settings.namespace}" if settings.namespace else ""
    lines = ["# Next steps", ""]
    if settings.namespace:
        lines += [f"0. kubectl create namespace {settings.namespace}   (if it does not exist)", ""]
    lines += ["1. Build and push the image every pod runs (the spec's directory is the build context; a",
              "   requirements.txt there is installed into it: list your services' own dependencies in it):", "",
              f"       docker build -f {shlex.quote(str(out_dir / 'Dockerfile'))} -t {settings.image}"
              f" {shlex.quote(str(context_dir))} && docker push {settings.image}", "",
              "   (add --build-arg STEADYSERVE=<a wheel in that directory, or a VCS URL> if your package index"
              " has no steadyserve)", "",
              "2. Create the Secrets the manifests name (values never enter a manifest):", ""]
    for dep in deployments:
        lines.append(f"       kubectl{ns} create secret generic {replica_key_secret(dep.name)}"
                     " --from-literal=key=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\"")
        if dep.spec.secrets:
            pairs = " ".join(f"--from-literal={name}=..." for name in sorted(dep.spec.secrets))
            lines.append(f"       kubectl{ns} create secret generic {secrets_secret(dep.name)} {pairs}")
    if settings.auth_required:
        tokens = shlex.quote(str(out_dir / TOKENS_FILE))
        if not tokens_written:
            lines += ["", "   The gateways accept the tokens of a state directory: make them there, then export again"
                          " with --tokens-from (it writes their digests, never the tokens, to "
                          f"{TOKENS_FILE}):", "",
                      "       steady token create --role invoker --name <caller> --state-dir .steady",
                      "       steady token create --role viewer --name prometheus --state-dir .steady",
                      "       steady export kubernetes ... --tokens-from .steady", ""]
        lines += [f"       kubectl{ns} create secret generic {gateway.TOKENS_SECRET} --from-file=tokens.json={tokens}",
                  f"       kubectl{ns} create secret generic {monitoring.METRICS_TOKEN_SECRET}"
                  " --from-literal=token=<the prometheus viewer token>"]
    lines += ["", f"3. Apply: kubectl{ns} apply -f {shlex.quote(str(out_dir))}", "",
              f"Callers reach the gateway at the Service {gateway.NAME} (port 80); the replicas of each deployment"
              f" are found through its headless Service ({', '.join(headless_service(d.name) for d in deployments)}).",
              "ServiceMonitors and PrometheusRules need the Prometheus Operator."]
    if has_custom_metrics:
        lines.append(f"The HPAs' custom metrics need prometheus-adapter with the rules in {ADAPTER_RULES_FILE}.")
    return "\n".join(lines) + "\n"


def not_exported(dep: DeploymentConfig) -> list[str]:
    """What of a deployment's spec has no Kubernetes counterpart here (told to the operator)."""
    spec, notes = dep.spec, []
    if spec.resources.custom:
        notes.append(f"resources.custom ({', '.join(spec.resources.custom)}) are Ray resources; left out")
    if spec.autoscaled and spec.replica_bounds[0] == 0:
        notes.append("the HorizontalPodAutoscaler does not scale to zero; minReplicas is 1")
    if spec.autoscaled and spec.scaling.predictive.enabled:
        notes.append("predictive autoscaling is steady's own; the HPA scales reactively")
    if spec.rollout.canary_percent is not None:
        notes.append("rollout.canary_percent: a Deployment's rolling update has no traffic split")
    return notes


ROLLBACK_NOTE = ("automatic rollback (rollout.max_error_rate) is the controller's: on Kubernetes a Deployment"
                 " rolls on while its pods are ready (`kubectl rollout undo` rolls back)")


def _inside(path: Path, base_dir: Path) -> str | None:
    relative = os.path.relpath(path, base_dir)
    return None if relative.startswith("..") else Path(relative).as_posix()


def image_excludes(deployments: Sequence[DeploymentConfig], base_dir: Path, out_dir: Path) -> list[str]:
    """The export (it may hold token digests) and every secret file: never built into the image."""
    found = [_inside(out_dir, base_dir)]
    for dep in deployments:
        found += [_inside(base_dir / ref.from_file, base_dir) for ref in dep.spec.secrets.values() if ref.from_file]
    return sorted({f for f in found if f and f != "."})


def export_files(deployments: Sequence[DeploymentConfig], gw: GatewaySpec, base_dir: Path, out_dir: Path,
                 settings: ExportSettings, alerting: Mapping[str, DeploymentAlerting],
                 tokens_written: bool = False) -> dict[str, str]:
    check_settings(deployments, settings)
    files = {f"{dep.name}.yaml": to_yaml(deployment_documents(dep, alerting[dep.name], base_dir, settings))
             for dep in deployments}
    files[GATEWAY_FILE] = to_yaml(gateway_documents(deployments, gw, settings))
    files["Dockerfile"] = image.dockerfile((base_dir / "requirements.txt").is_file())
    files["Dockerfile.dockerignore"] = image.dockerignore(image_excludes(deployments, base_dir, out_dir))
    custom = any(d.spec.autoscaled and d.spec.scaling.metric != "cpu" for d in deployments)
    if custom:
        files[ADAPTER_RULES_FILE] = ADAPTER_RULES
    files["NEXT_STEPS.md"] = next_steps(deployments, settings, out_dir, base_dir, custom, tokens_written)
    return files
