"""Command lines of the processes the controller starts (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .config import DeploymentConfig
from .environment import BLAS_THREAD_VARS, INHERITED_ENV, child_base_env
from .spec import GatewaySpec

__all__ = ["BLAS_THREAD_VARS", "INHERITED_ENV", "child_base_env", "gateway_args", "replica_args", "replica_env"]

REPLICA_MODULE = "steadyserve.replica.main"
GATEWAY_MODULE = "steadyserve.gateway.main"


METRICS_DIR = "metrics"  # in the state directory: every process's metrics shard


def replica_args(dep: DeploymentConfig, replica_id: str, grace_s: float, revision: int = 0) -> list[str]:
    """Everything but where it listens and writes (``--endpoint``, ``--error-file``, ``--metrics-dir``):
    its backend adds those."""
    spec = dep.spec
    args = ["--target", dep.target, "--id", replica_id, "--deployment", dep.name,
            "--revision", str(revision), "--max-body-bytes", str(spec.max_body_bytes),
            "--grace-s", str(dep.drain_grace_s(grace_s)), "--workers", str(spec.workers),
            "--handler-timeout-s", str(dep.handler_timeout_s), "--stuck-grace-s", str(spec.health.stuck_grace_s),
            "--max-ongoing", str(dep.max_ongoing_requests)]
    if not spec.batching:
        args.append("--no-batching")
    # resources.memory_mb is watched by the controller (resident memory), not set as a process limit.
    if spec.resources.address_space_mb is not None:
        args += ["--address-space-mb", str(spec.resources.address_space_mb)]
    if spec.resources.cpu_share is not None:
        args += ["--cpu-share", str(spec.resources.cpu_share)]
    return args


def replica_env(deployment_env: Mapping[str, str], secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a replica's environment adds to the base one: its deployment's env, then its secrets."""
    return {**deployment_env, **(secrets or {})}


RATE_LIMITS_FILE = "ratelimits.cells"  # in the state directory, next to the routing table


def refusal_counts_file(gateway_id: str) -> str:
    return f"refusals-{gateway_id}.counts"


def gateway_args(gw: GatewaySpec, gateway_id: str, routes_path: Path, endpoint: str, grace_s: float) -> list[str]:
    state_dir = routes_path.parent
    args = ["--id", gateway_id, "--host", gw.host, "--port", str(gw.port), "--routes", str(routes_path),
            "--admin-endpoint", endpoint, "--max-body-bytes", str(gw.max_body_bytes), "--grace-s", str(grace_s),
            # Shared by every gateway process: a token's rate holds across them, not per process.
            "--rate-limits", str(state_dir / RATE_LIMITS_FILE),
            # Per slot, kept across restarts: the audit accounts for what a killed process refused.
            "--refusal-counts", str(state_dir / refusal_counts_file(gateway_id)),
            "--metrics-dir", str(state_dir / METRICS_DIR)]
    for name, value in gw.http.model_dump().items():
        args += ["--" + name.replace("_", "-"), str(value)]
    if gw.tls_cert is not None and gw.tls_key is not None:
        args += ["--tls-cert", str(gw.tls_cert), "--tls-key", str(gw.tls_key)]
    return args
