"""Typed, frozen settings of one running platform, resolved once at the entry point.

``steady serve PATH`` and ``steady up -f steady.yaml`` both end here: a
``PlatformConfig`` holding the gateway settings and one resolved
``DeploymentConfig`` per deployment (its service class found and introspected in a child
process: see ``describer.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..alerting.notifyspec import NotificationSettings
from ..autoscaling.settings import CapacitySpec
from ..description import ServiceDescription
from ..errors import ConfigError
from ..loading import parse_target
from .describer import ChildDescriber, Describer, DescribeRequest
from .environment import child_base_env
from .spec import BackendSpec, DeploymentSpec, GatewaySpec, PlatformSpec
from .supervision import SupervisionPolicy


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentConfig(_Frozen):
    name: str
    target: str  # absolute "file.py:Class"
    spec: DeploymentSpec
    handlers_idempotent: dict[str, bool]
    v2_handler: str | None = None
    chat_handler: str | None = None  # the handler serving OpenAI's /v1/chat/completions, if any
    max_batch_size: int = 0  # the largest Batch(max_size=) among its handlers; 0: none batched
    secret_versions: dict[str, int] = {}  # which stored value of each of spec.secrets this revision uses

    @property
    def max_ongoing_requests(self) -> int:
        """Per replica, all gateways together: the spec's, or 8 (twice the largest batch if larger)."""
        configured = self.spec.admission.max_ongoing_requests
        if configured is not None:
            return configured
        return max(8, 2 * self.max_batch_size)

    @property
    def handler_timeout_s(self) -> float:
        return self.spec.handler_timeout_s if self.spec.handler_timeout_s is not None else self.spec.timeout_s

    def drain_grace_s(self, grace_s: float) -> float:
        """How long a retiring replica may finish its calls: a call runs at most handler_timeout_s, so
        scale-in and rollouts never cut one short (a stop of the whole instance waits only grace_s)."""
        return max(grace_s, self.handler_timeout_s + 1.0)

    @property
    def supervision(self) -> SupervisionPolicy:
        health = self.spec.health
        return SupervisionPolicy(failure_threshold=health.failure_threshold,
                                 startup_timeout_s=health.startup_timeout_s,
                                 drain_timeout_s=max(SupervisionPolicy.drain_timeout_s,
                                                     self.drain_grace_s(0.0) + 5.0))


class PlatformConfig(_Frozen):
    state_dir: Path
    gateway: GatewaySpec = GatewaySpec()
    deployments: tuple[DeploymentConfig, ...]
    # `steady serve` routes /<handler> to its one deployment; `steady up` uses /<deployment>/<handler>.
    default_deployment: str | None = None
    auth_required: bool = False
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8081, ge=0, le=65535)
    base_dir: Path = Path(".")  # relative service paths in API calls resolve from here
    probe_interval_s: float = Field(default=0.5, gt=0)
    grace_s: float = Field(default=10.0, ge=0)
    # How to apply a changed spec, told when a recovering controller finds it differs from what runs.
    apply_hint: str = "steady deploy -f steady.yaml"
    snapshot_interval_s: float = Field(default=300.0, gt=0)  # state DB snapshots (spec `state:`)
    snapshot_keep: int = Field(default=12, ge=0)
    notifications: NotificationSettings = NotificationSettings()  # where alerts go (spec `notifications:`)
    capacity: CapacitySpec = CapacitySpec()  # the machine's budget for replicas (spec `capacity:`)
    backend: BackendSpec = BackendSpec()  # where replicas run (spec `backend:`, or `steady up --ray-address`)

    @property
    def url(self) -> str:
        return f"{self.gateway.scheme}://{self.gateway.host}:{self.gateway.port}"

    @property
    def api_url(self) -> str:
        return f"{self.gateway.scheme}://{self.api_host}:{self.api_port}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"




def resolve_deployment(name: str, spec: DeploymentSpec, base_dir: Path, describer: Describer | None = None,
                       env: Mapping[str, str] | None = None,
                       timeout_s: float | None = None) -> tuple[DeploymentConfig, ServiceDescription]:
    """Learn the deployment's service from a child that imports it (errors name the file) and
    record what routing needs. This process never imports the service.

    ``env`` is the child's environment before the deployment's own ``env`` (default: what every
    child keeps of this process's, see environment.py); ``timeout_s`` bounds the import (default: health.startup_timeout_s).
    """
    path_part, sep, class_part = spec.service.partition(":")
    path = Path(path_part)
    if not path.is_absolute():
        path = base_dir / path
    target = parse_target(f"{path}{sep}{class_part}")
    base_env = child_base_env(os.environ) if env is None else env
    request = DescribeRequest(
        target=target, env={**base_env, **spec.env},
        timeout_s=spec.health.startup_timeout_s if timeout_s is None else timeout_s,
        address_space_mb=spec.resources.address_space_mb, memory_mb=spec.resources.memory_mb,
    )
    service = (describer or ChildDescriber()).describe(request)
    handlers = service.handlers
    unknown = sorted(set(spec.idempotent) - set(handlers))
    if unknown:
        raise ConfigError(f"deployment {name!r}: idempotent names unknown handlers {', '.join(unknown)};"
                          f" {service.class_name} has {', '.join(handlers)}")
    config = DeploymentConfig(
        name=name,
        target=service.target,
        spec=spec,
        handlers_idempotent={h: spec.idempotent.get(h, d.idempotent) for h, d in handlers.items()},
        v2_handler=next((h for h, d in handlers.items() if d.v2), None),
        chat_handler=next((h for h, d in handlers.items() if d.openai == "chat"), None),
        max_batch_size=max((d.batch_max_size or 0 for d in handlers.values()), default=0),
    )
    return config, service


def resolve_platform(spec: PlatformSpec, base_dir: Path, state_dir: Path, api_port: int,
                     default_deployment: str | None = None, auth_required: bool = False,
                     describer: Describer | None = None,
                     env: Mapping[str, str] | None = None,
                     where: Callable[[str], str] | None = None) -> tuple[PlatformConfig, dict[str, ServiceDescription]]:
    """Every deployment resolved, their services imported in parallel children; the first error
    (in the spec's order) is raised, prefixed with ``where(deployment name)`` when given
    (``steady.yaml:3: deployments.echo.service``)."""
    describer = describer or ChildDescriber()
    names = list(spec.deployments)
    with ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="describe") as pool:
        futures = [pool.submit(resolve_deployment, name, spec.deployments[name], base_dir, describer, env)
                   for name in names]
        resolved = []
        try:
            for name, future in zip(names, futures, strict=True):
                try:
                    resolved.append(future.result())
                except ConfigError as exc:
                    if where is None:
                        raise
                    raise ConfigError(f"{where(name)}: {exc}") from exc
        except BaseException:  # Ctrl-C, or one failed: the others' imports are not waited for
            describer.cancel()
            raise
    platform = PlatformConfig(state_dir=state_dir.resolve(), gateway=spec.gateway, api_port=api_port,
                              base_dir=base_dir.resolve(), deployments=tuple(config for config, _ in resolved),
                              default_deployment=default_deployment, auth_required=auth_required,
                              snapshot_interval_s=spec.state.snapshot_interval_s, snapshot_keep=spec.state.snapshot_keep,
                              notifications=spec.notifications, capacity=spec.capacity, backend=spec.backend)
    return platform, {config.name: service for config, service in resolved}
