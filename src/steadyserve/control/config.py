"""Typed, frozen settings of one running platform, resolved once at the entry point.

``steady serve PATH`` and ``steady up -f steady.yaml`` both end here: a
``PlatformConfig`` holding the gateway settings and one resolved
``DeploymentConfig`` per deployment (its service class found and introspected).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..loading import load_service_class, parse_target
from ..service import HandlerSpec, handler_specs
from .spec import DeploymentSpec, GatewaySpec, PlatformSpec
from .supervision import SupervisionPolicy

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux
_SOCKET_NAME_ROOM = 64  # "<deployment>-<id>-<generation>.sock"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentConfig(_Frozen):
    name: str
    target: str  # absolute "file.py:Class"
    spec: DeploymentSpec
    handlers_idempotent: dict[str, bool]
    v2_handler: str | None = None
    max_batch_size: int = 0  # the largest Batch(max_size=) among its handlers; 0: none batched

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

    @property
    def supervision(self) -> SupervisionPolicy:
        health = self.spec.health
        return SupervisionPolicy(failure_threshold=health.failure_threshold,
                                 startup_timeout_s=health.startup_timeout_s)


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

    @property
    def url(self) -> str:
        return f"{self.gateway.scheme}://{self.gateway.host}:{self.gateway.port}"

    @property
    def api_url(self) -> str:
        return f"{self.gateway.scheme}://{self.api_host}:{self.api_port}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def socket_dir(self) -> Path:
        """Short enough for Unix socket paths; falls back to /tmp for deep state dirs."""
        preferred = self.state_dir / "sock"
        if len(str(preferred)) + _SOCKET_NAME_ROOM <= _MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"steady-{digest}"



def resolve_deployment(name: str, spec: DeploymentSpec, base_dir: Path) -> tuple[DeploymentConfig, dict[str, HandlerSpec]]:
    """Import the deployment's service (errors name the file) and record what routing needs."""
    path_part, sep, class_part = spec.service.partition(":")
    path = Path(path_part)
    if not path.is_absolute():
        path = base_dir / path
    target = parse_target(f"{path}{sep}{class_part}")
    cls = load_service_class(target)
    specs = handler_specs(cls)
    unknown = sorted(set(spec.idempotent) - set(specs))
    if unknown:
        from ..errors import ConfigError

        raise ConfigError(f"deployment {name!r}: idempotent names unknown handlers {', '.join(unknown)};"
                          f" {cls.__name__} has {', '.join(specs)}")
    config = DeploymentConfig(
        name=name,
        target=f"{target.file}:{cls.__name__}",
        spec=spec,
        handlers_idempotent={h: spec.idempotent.get(h, s.options.idempotent) for h, s in specs.items()},
        v2_handler=next((h for h, s in specs.items() if s.options.v2), None),
        max_batch_size=max((s.options.batch.max_size for s in specs.values() if s.options.batch), default=0),
    )
    return config, specs


def resolve_platform(spec: PlatformSpec, base_dir: Path, state_dir: Path, api_port: int,
                     default_deployment: str | None = None,
                     auth_required: bool = False) -> tuple[PlatformConfig, dict[str, dict[str, HandlerSpec]]]:
    deployments, all_specs = [], {}
    for name, dep in spec.deployments.items():
        config, specs = resolve_deployment(name, dep, base_dir)
        deployments.append(config)
        all_specs[name] = specs
    platform = PlatformConfig(state_dir=state_dir.resolve(), gateway=spec.gateway, api_port=api_port,
                              base_dir=base_dir.resolve(), deployments=tuple(deployments),
                              default_deployment=default_deployment, auth_required=auth_required)
    return platform, all_specs
