"""Typed, frozen settings of one ``steady serve`` run, resolved at the entry point."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..gateway.routes import Policy
from .supervision import SupervisionPolicy

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; leave room for names


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    service_name: str
    handlers_idempotent: dict[str, bool]
    v2_handler: str | None = None
    state_dir: Path
    replicas: int = Field(default=2, ge=1, le=64)
    gateways: int = Field(default=2, ge=1, le=16)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    policy: Policy = "least_request"
    hash_key: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    probe_interval_s: float = Field(default=0.5, gt=0)
    probe_timeout_s: float = Field(default=1.0, gt=0)
    grace_s: float = Field(default=10.0, ge=0)
    batching: bool = True
    supervision: SupervisionPolicy = SupervisionPolicy()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def socket_dir(self) -> Path:
        """Short enough for Unix socket paths; falls back to /tmp for deep state dirs."""
        preferred = self.state_dir / "sock"
        if len(str(preferred)) + 24 <= _MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"steady-{digest}"
