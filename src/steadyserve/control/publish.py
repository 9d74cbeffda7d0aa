"""The routing table the gateways follow, built from desired and observed state (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..gateway.routes import (
    AdmissionRoute,
    CanaryRoute,
    HandlerRoute,
    OutlierRoute,
    ReplicaRoute,
    RoutingTable,
    ServiceRoute,
    TokenRoute,
)
from .config import DeploymentConfig
from .spec import RolloutSettings

# (deployment, replica id, generation, endpoint, revision, credential) of each ready replica
ReadyReplica = tuple[str, str, int, str, int, str | None]


def canary_route(revision: int, previous_revision: int | None, settings: RolloutSettings,
                 new_ready: bool, baked: bool) -> CanaryRoute | None:
    """A fixed traffic share for the new revision while its canary bakes (if configured)."""
    if previous_revision is None or settings.canary_percent is None or not new_ready or baked:
        return None
    return CanaryRoute(revision=revision, percent=settings.canary_percent)


def token_routes(tokens: Sequence[dict[str, Any]]) -> dict[str, TokenRoute]:
    """Active tokens by id, with their whole rate limit: the gateway processes share one state per token."""
    return {
        t["id"]: TokenRoute(name=t["name"], role=t["role"], digest=t["digest"],
                            rate_per_s=t["rate_per_s"] or None, burst=t["burst"] or None)
        for t in tokens
    }


def admission_route(dep: DeploymentConfig, gateway_processes: int) -> AdmissionRoute:
    """Each gateway process enforces its share of the deployment's limits (rounded up)."""
    admission = dep.spec.admission
    return AdmissionRoute(
        max_ongoing_per_replica=-(-dep.max_ongoing_requests // gateway_processes),
        max_queued=-(-admission.max_queued_requests // gateway_processes),
        queue_timeout_s=admission.queue_timeout_s, adaptive=admission.adaptive,
    )


def cold_start_timeout(dep: DeploymentConfig) -> float | None:
    """How long a call waits for a first replica: set for deployments that may scale to zero."""
    spec = dep.spec
    return spec.scaling.cold_start_timeout_s if spec.autoscaled and spec.replica_bounds[0] == 0 else None


def build_table(*, version: int, default_deployment: str | None, deployments: Sequence[DeploymentConfig],
                ready: Sequence[ReadyReplica], canaries: dict[str, CanaryRoute | None], auth_required: bool,
                tokens: Sequence[dict[str, Any]], gateway_processes: int) -> RoutingTable:
    services = {}
    for dep in deployments:
        spec = dep.spec
        services[dep.name] = ServiceRoute(
            policy=spec.lb, hash_key=spec.hash_key, timeout_s=spec.timeout_s,
            admission=admission_route(dep, gateway_processes),
            outlier=OutlierRoute.model_validate(spec.outlier.model_dump()),
            max_attempts=spec.retry.max_attempts, retry_budget_ratio=spec.retry.budget_ratio,
            handlers={h: HandlerRoute(idempotent=i) for h, i in dep.handlers_idempotent.items()},
            v2_handler=dep.v2_handler,
            chat_handler=dep.chat_handler,
            stream_chunk_timeout_s=spec.streaming.chunk_timeout_s or spec.timeout_s,
            stream_timeout_s=spec.streaming.timeout_s,
            canary=canaries.get(dep.name),
            forward_identity=spec.forward_identity,
            cold_start_timeout_s=cold_start_timeout(dep),
            replicas=tuple(ReplicaRoute(id=i, generation=g, endpoint=e, revision=r, credential=c)
                           for d, i, g, e, r, c in ready if d == dep.name),
        )
    return RoutingTable(version=version, default_service=default_deployment, services=services,
                        auth_required=auth_required, tokens=token_routes(tokens))
