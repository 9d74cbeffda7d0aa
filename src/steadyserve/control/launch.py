"""Command lines of the processes the controller starts (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .config import DeploymentConfig
from .spec import GatewaySpec

REPLICA_MODULE = "steadyserve.replica.main"
GATEWAY_MODULE = "steadyserve.gateway.main"


def replica_args(dep: DeploymentConfig, replica_id: str, endpoint: str, error_file: Path,
                 grace_s: float) -> list[str]:
    spec = dep.spec
    args = ["--target", dep.target, "--id", replica_id, "--deployment", dep.name, "--endpoint", endpoint,
            "--error-file", str(error_file), "--max-body-bytes", str(spec.max_body_bytes),
            "--grace-s", str(grace_s), "--workers", str(spec.workers),
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


# Math libraries start a thread per core in every replica; on a small machine these fight the
# event loop (and each other) and batched calls stall for milliseconds. One thread each, as Ray
# does for actors, unless the deployment's env or the operator's environment says otherwise.
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def replica_env(deployment_env: Mapping[str, str], inherited: Mapping[str, str]) -> dict[str, str]:
    """What a replica's environment adds to the one it inherits."""
    defaults = {name: "1" for name in BLAS_THREAD_VARS if name not in inherited}
    return {**defaults, **deployment_env}


def gateway_args(gw: GatewaySpec, gateway_id: str, routes_path: Path, endpoint: str, grace_s: float) -> list[str]:
    args = ["--id", gateway_id, "--host", gw.host, "--port", str(gw.port), "--routes", str(routes_path),
            "--admin-endpoint", endpoint, "--max-body-bytes", str(gw.max_body_bytes), "--grace-s", str(grace_s)]
    for name, value in gw.http.model_dump().items():
        args += ["--" + name.replace("_", "-"), str(value)]
    if gw.tls_cert is not None and gw.tls_key is not None:
        args += ["--tls-cert", str(gw.tls_cert), "--tls-key", str(gw.tls_key)]
    return args
