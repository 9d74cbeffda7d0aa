"""The deployment spec (``steady.yaml``): typed, frozen, unknown keys rejected.

    deployments:
      digits:
        service: examples/digits        # PATH[:Class], relative to this file
        replicas: 2                     # or {min: 1, max: 4}
        lb: least_request
    gateway:
      port: 8080

Errors name the file, the line and the key: ``steady.yaml:7: deployments.digits.replicas:
Input should be a valid integer``.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped,unused-ignore]
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from ..alerting.notifyspec import NotificationSettings
from ..alerting.rulespec import AlertRules
from ..alerting.slospec import SloSpec
from ..autoscaling.settings import AutoscalingSettings, CapacitySpec
from ..errors import ConfigError
from ..gateway.routes import Policy

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
RESERVED_NAMES = frozenset({"v1", "v2"})  # the gateway's OpenAI and Open Inference Protocol routes


def deployment_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a deployment (its calls go to ``/<name>/<handler>``), or None."""
    if not re.fullmatch(NAME_PATTERN, name):  # "$" alone would let "echo\n" through
        return f"deployment name {name!r} must match {NAME_PATTERN}"
    if name in RESERVED_NAMES:
        return f"deployment name {name!r} is reserved: /{name}/ is a route of the gateway's own"
    return None
MAX_SPEC_BYTES = 1 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # inf breaks JSON tables


class ReplicaRange(_Strict):
    min: StrictInt = Field(ge=0, le=64)  # strict: `true` or "1" is a mistake, not a count
    max: StrictInt = Field(ge=1, le=64)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class RetrySettings(_Strict):
    max_attempts: int = Field(default=3, ge=1, le=10)
    budget_ratio: float = Field(default=0.2, ge=0, le=1)


class HealthSettings(_Strict):
    probe_timeout_s: float = Field(default=1.0, gt=0)
    failure_threshold: int = Field(default=3, ge=1)
    startup_timeout_s: float = Field(default=120.0, gt=0)
    stuck_grace_s: float = Field(
        default=5.0, ge=0,
        description="a worker still in one call handler_timeout_s + this long is stuck: the replica is replaced")


class RolloutSettings(_Strict):
    max_surge: int = Field(default=1, ge=1, le=16, description="new replicas starting at once")
    ready_deadline_s: float = Field(default=120.0, gt=0, description="roll back if a new replica is not ready by then")
    bake_s: float = Field(default=5.0, ge=0, description="the first new replica serves this long before old ones go")
    max_error_rate: float = Field(default=0.05, ge=0, le=1, description="roll back above this share of 5xx")
    min_requests: int = Field(default=20, ge=1, description="requests needed before the error rate counts")
    canary_percent: float | None = Field(
        default=None, gt=0, lt=100,
        description="during the bake, send this share of traffic to the new revision (default: its natural share)")
    max_bake_s: float = Field(
        default=60.0, gt=0,
        description="when min_requests calls are not seen by then (at least bake_s), low_traffic decides")
    low_traffic: Literal["promote", "rollback"] = Field(
        default="promote", description="what a bake without enough traffic to judge ends in")
    max_p99_ratio: float | None = Field(
        default=None, ge=1,
        description="roll back when the new revision's p99 latency exceeds this multiple of the old one's")


class AdmissionSettings(_Strict):
    """How many calls a deployment takes on at once; the rest wait briefly or are shed (503)."""

    max_ongoing_requests: int | None = Field(
        default=None, ge=1, le=10_000,
        description="calls one replica works on at once, all gateway processes together"
                    " (default: 8, or twice the largest batch max_size)")
    max_queued_requests: int = Field(
        default=1024, ge=0, le=100_000,
        description="calls waiting at the gateways for a free replica, all gateway processes together")
    queue_timeout_s: float = Field(default=2.0, gt=0, description="a call waits at most this long for a replica")
    adaptive: bool = Field(
        default=False,
        description="limit each replica's concurrency by its measured latency (gradient), up to max_ongoing_requests")


class OutlierSettings(_Strict):
    """Passive ejection on what the gateway sees: 5xx answers, timeouts, transport failures."""

    consecutive_failures: int = Field(default=5, ge=1, le=1000)
    base_ejection_s: float = Field(default=5.0, gt=0)
    max_ejection_s: float = Field(default=60.0, gt=0)
    max_ejected_percent: float = Field(default=100.0, ge=0, le=100,
                                       description="at most this share of replicas ejected at once (at least one)")
    panic_threshold_percent: float = Field(
        default=50.0, ge=0, le=100,
        description="below this share of routable replicas, route to all of them (panic)")


class ResourceLimits(_Strict):
    memory_mb: int | None = Field(
        default=None, ge=64,
        description="resident memory limit per replica (with its child processes); above it the replica is replaced")
    address_space_mb: int | None = Field(
        default=None, ge=64,
        description="opt-in backstop: RLIMIT_AS of each replica (breaks libraries that reserve virtual memory)")
    cpu_share: float | None = Field(default=None, gt=0, le=1, description="1 = normal priority; lower = nicer")
    # What a cluster backend reserves per replica (Ray's scheduler places by them); the local
    # backend runs every replica on this machine and ignores them.
    cpus: float = Field(default=1.0, ge=0, le=1024, description="CPUs reserved per replica on a cluster")
    gpus: float = Field(default=0.0, ge=0, le=64, description="GPUs reserved per replica on a cluster")
    custom: dict[str, float] = Field(
        default={}, description="custom cluster resources per replica (Ray's `resources`), e.g. {accelerator: 1}")

    @field_validator("custom")
    @classmethod
    def _custom_names(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}", name) or name in _BUILTIN_RESOURCES:
                raise ValueError(f"custom resource {name!r}: a name of letters, digits, _.:- that is not one of"
                                 f" {', '.join(sorted(_BUILTIN_RESOURCES))} (set those with cpus, gpus, memory_mb)")
            if not 0 <= amount <= 1e6:
                raise ValueError(f"custom resource {name!r}: amount {amount} must be between 0 and 1e6")
        return value


_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


class PredictionSettings(_Strict):
    """Failure prediction over each replica's recent readings (control/prediction.py)."""

    replace: bool = Field(
        default=False, description="replace a replica before its memory trend reaches resources.memory_mb"
        " (start a successor, wait until it is ready, drain the old one)")
    window_s: float = Field(default=60.0, ge=5, le=3600, description="trends are fitted over this much history")
    horizon_s: float = Field(default=300.0, gt=0, le=86400,
                             description="forecast a memory limit reached within this long")
    latency_drift: float = Field(default=3.0, gt=1,
                                 description="warn when handler time is this many times the replica's first calls'")
    error_ratio: float = Field(default=0.5, gt=0, le=1, description="warn when this share of recent calls failed")


SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class SecretRef(_Strict):
    """Where the deploying user's `steady` reads a secret's value; the value never enters a spec."""

    from_env: str | None = Field(default=None, description="an environment variable of the deploying user")
    from_file: str | None = Field(default=None, description="a file (relative paths: from the spec's directory)")
    mount: Literal["env", "file"] = Field(
        default="env", description="env: an environment variable of its name; file: $STEADY_SECRETS_DIR/<name>")

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.from_env is None) == (self.from_file is None):
            raise ValueError("give exactly one of from_env or from_file")
        return self

    @field_validator("from_env")
    @classmethod
    def _variable_name(cls, value: str | None) -> str | None:
        # What no environment can hold: say so now, not as "is not set" when the CLI reads it.
        if value is not None and (not value or "=" in value or "\0" in value):
            raise ValueError(f"{value!r} is not an environment variable name (empty, or holds '=' or NUL)")
        return value

    @field_validator("from_file")
    @classmethod
    def _file_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\0" in value):
            raise ValueError("must be a file path, not empty and without NUL bytes")
        return value


class StreamingSettings(_Strict):
    """How long a streamed answer may take at the gateway (its first chunk is bound by timeout_s)."""

    chunk_timeout_s: float | None = Field(
        default=None, gt=0, description="longest pause between two chunks of a stream (default: timeout_s)")
    timeout_s: float = Field(default=600.0, gt=0, description="a whole stream, first chunk to last")


class DeploymentSpec(_Strict):
    service: str
    replicas: int | ReplicaRange = Field(default=2)
    lb: Policy = "least_request"
    hash_key: str | None = None
    timeout_s: float = Field(default=30.0, gt=0, description="whole call at the gateway, retries included")
    handler_timeout_s: float | None = Field(
        default=None, gt=0, description="one handler call inside a replica (default: timeout_s)")
    workers: int = Field(default=1, ge=1, le=256, description="threads per replica running sync handlers")
    admission: AdmissionSettings = AdmissionSettings()
    outlier: OutlierSettings = OutlierSettings()
    retry: RetrySettings = RetrySettings()
    health: HealthSettings = HealthSettings()
    rollout: RolloutSettings = RolloutSettings()
    resources: ResourceLimits = ResourceLimits()
    prediction: PredictionSettings = PredictionSettings()
    alerts: AlertRules = Field(
        default=[], description="alert rules; a built-in's name changes it, or turns it off with enabled: false")
    slo: SloSpec | None = Field(default=None, description="availability and latency objectives: burn-rate alerts")
    autoscaling: AutoscalingSettings | None = Field(
        default=None, description="with replicas: {min, max}: what the replica count follows (docs/autoscaling.md)")
    env: dict[str, str] = Field(default={}, description="plain settings, visible to viewers: use secrets for secrets")
    secrets: dict[str, SecretRef] = Field(
        default={}, description="write-only values delivered to replicas; the API shows their names only")
    forward_identity: bool = Field(
        default=False, description="tell replicas who called (x-steady-caller: name and role of the token)")
    idempotent: dict[str, bool] = Field(default={}, description="per-handler override of @handler(idempotent=)")
    batching: bool = True
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    streaming: StreamingSettings = Field(
        default=StreamingSettings(), description="timeouts of streamed answers (docs/streaming.md)")

    @field_validator("replicas", mode="before")
    @classmethod
    def _replica_count(cls, value: Any) -> int | ReplicaRange:
        # One clear message instead of one per member of the union.
        if isinstance(value, bool) or not isinstance(value, (int, dict, ReplicaRange)):
            raise ValueError("must be a whole number or a mapping {min: N, max: M}")
        if isinstance(value, dict):
            return ReplicaRange.model_validate(value)
        if isinstance(value, int) and not 1 <= value <= 64:
            raise ValueError("must be between 1 and 64")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        # What the OS cannot take into a process environment: say so now, not at every start attempt.
        for key, item in value.items():
            if not key:
                raise ValueError("an environment variable name must not be empty")
            if "=" in key:
                raise ValueError(f"environment variable name {key!r} must not contain '='")
            if "\0" in key:
                raise ValueError(f"environment variable name {key!r} must not contain a NUL byte")
            if "\0" in item:
                raise ValueError(f"the value of {key} must not contain a NUL byte")
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, SecretRef]) -> dict[str, SecretRef]:
        for name in value:
            if not re.fullmatch(SECRET_NAME_PATTERN, name):  # "$" alone would let "KEY\n" through
                raise ValueError(f"secret name {name!r} must look like an environment variable name (A-Z, 0-9, _)")
        return value

    @model_validator(mode="after")
    def _prediction_has_a_limit(self) -> DeploymentSpec:
        if self.prediction.replace and self.resources.memory_mb is None:
            raise ValueError("prediction.replace needs resources.memory_mb: the limit the memory trend is"
                             " measured against")
        return self

    @model_validator(mode="after")
    def _autoscaling_has_bounds(self) -> DeploymentSpec:
        if self.autoscaling is not None and isinstance(self.replicas, int):
            raise ValueError(f"autoscaling needs bounds: replicas: {{min: 1, max: {max(self.replicas, 2)}}}"
                             f" instead of replicas: {self.replicas}")
        return self

    @model_validator(mode="after")
    def _secrets_apart_from_env(self) -> DeploymentSpec:
        both = sorted(set(self.env) & set(self.secrets))
        if both:
            raise ValueError(f"{', '.join(both)} is both in env and in secrets; keep it in secrets only")
        return self

    @field_validator("service")
    @classmethod
    def _service_path(cls, value: str) -> str:
        if "\x00" in value or not value.strip():
            raise ValueError("must be a path (PATH[:Class]) without NUL bytes")
        return value

    @field_validator("hash_key")
    @classmethod
    def _hash_key(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("header:", "json:")):
            raise ValueError("must look like 'header:<name>' or 'json:<field>'")
        return value

    @property
    def desired_replicas(self) -> int:
        """Replicas to run now; a range starts at its minimum, at least one (autoscaling moves it later)."""
        return self.replicas if isinstance(self.replicas, int) else max(1, self.replicas.min)

    @property
    def autoscaled(self) -> bool:
        return isinstance(self.replicas, ReplicaRange)

    @property
    def scaling(self) -> AutoscalingSettings:
        """The autoscaling settings (the defaults for a bare range)."""
        return self.autoscaling if self.autoscaling is not None else AutoscalingSettings()

    @property
    def replica_bounds(self) -> tuple[int, int]:
        if isinstance(self.replicas, int):
            return self.replicas, self.replicas
        return self.replicas.min, self.replicas.max


class HttpLimitsSpec(_Strict):
    """The gateway's HTTP limits (``wire.limits.ServerLimits``; the body limit is ``max_body_bytes``)."""

    max_url_bytes: int = Field(default=8 * 1024, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, gt=0)
    max_headers: int = Field(default=100, gt=0)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    keepalive_timeout_s: float = Field(default=60.0, gt=0)
    send_timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=10_000, gt=0)


class GatewaySpec(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    processes: int = Field(default=2, ge=1, le=16)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    http: HttpLimitsSpec = HttpLimitsSpec()
    tls_cert: Path | None = Field(default=None, description="PEM certificate: serve HTTPS (gateway and API)")
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySpec:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"{path}: no such file")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


class StateSpec(_Strict):
    """Snapshots of the state database the controller keeps in ``<state-dir>/snapshots``."""

    snapshot_interval_s: float = Field(default=300.0, gt=0, description="one snapshot at start, then one this often")
    snapshot_keep: int = Field(default=12, ge=0, le=10_000, description="newest snapshots kept; 0: none taken")


class BackendSpec(_Strict):
    """Where replicas run: local processes (the default) or Ray actors on a cluster."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(
        default=None, description="the Ray cluster to join (ray://host:10001, host:6379 or auto); kind: ray only")
    namespace: str = Field(default="steadyserve", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
                           description="Ray namespace of the replica actors")

    @model_validator(mode="after")
    def _address_for_ray(self) -> BackendSpec:
        if self.kind == "ray" and not self.address:
            raise ValueError("kind: ray needs the cluster's address (e.g. address: auto, or ray://head:10001)")
        if self.kind == "local" and self.address:
            raise ValueError("address is for kind: ray; the local backend runs replicas on this machine")
        return self


class PlatformSpec(_Strict):
    deployments: dict[str, DeploymentSpec]
    backend: BackendSpec = BackendSpec()
    gateway: GatewaySpec = GatewaySpec()
    state: StateSpec = StateSpec()
    notifications: NotificationSettings = NotificationSettings()
    capacity: CapacitySpec = CapacitySpec()

    @field_validator("deployments")
    @classmethod
    def _names(cls, value: dict[str, DeploymentSpec]) -> dict[str, DeploymentSpec]:
        if not value:
            raise ValueError("declare at least one deployment")
        for name in value:
            problem = deployment_name_problem(name)
            if problem is not None:
                raise ValueError(problem)
        return value


def _line_index(node: yaml.Node, path: tuple[Any, ...] = (),
                seen: set[int] | None = None) -> dict[tuple[Any, ...], int]:
    """Map each key path to its 1-based line in the file.

    A node reached again through an alias (``*name``) is indexed once, under its first path:
    an alias bomb (a few lines naming each other a billion times) costs its size in lines."""
    seen = set() if seen is None else seen
    lines = {path: node.start_mark.line + 1}
    if id(node) in seen:
        return lines
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            lines[child] = key.start_mark.line + 1
            for sub, line in _line_index(value, child, seen).items():
                lines.setdefault(sub, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, i), seen))
    return lines


def _nearest_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    for end in range(len(loc), -1, -1):
        key = tuple(str(p) if not isinstance(p, int) else p for p in loc[:end])
        if key in lines:
            return lines[key]
    return 1


def parse_spec(text: str, source: str) -> PlatformSpec:
    """Validate spec text; every error names ``source:line: key: problem``."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{source}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply (or an alias refers to itself)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the spec must be a mapping with a 'deployments' key")
    try:
        lines = _line_index(node) if node is not None else {}
        return PlatformSpec.model_validate(data)
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply (or an alias refers to itself)") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if p not in ("int", "ReplicaRange"))
            key = ".".join(str(p) for p in loc) or "(top level)"
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = _allowed_keys(loc[:-1])
                message = f"unknown key{'; the keys here: ' + ', '.join(allowed) if allowed else ''}"
            problems.append(f"{source}:{_nearest_line(lines, loc)}: {key}: {message}")
        raise ConfigError("\n".join(problems)) from exc


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``loc`` (within the spec file) accepts, as the file writes them."""
    model: Any = PlatformSpec
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        if isinstance(part, str) and part in _field_names(model):
            model = _inner_model(model.model_fields[_field_names(model)[part]].annotation)
        # else: a mapping key (a deployment's name) or a list index: the values' model stays
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _field_names(model: type[BaseModel]) -> dict[str, str]:
    return {(f.alias or name): name for name, f in model.model_fields.items()} | {n: n for n in model.model_fields}


def _inner_model(annotation: Any) -> Any:
    """The model inside ``X | None``, ``list[X]``, ``dict[str, X]``, ``Annotated[...]`` (or the type itself)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(typing.get_args(annotation)):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def read_spec_text(path: Path) -> str:
    """The spec file's text; unreadable or non-UTF-8 files are a ConfigError naming file and line."""
    try:
        if not path.is_file():  # not a FIFO or a device: those could hang or never end
            raise ConfigError(f"{path}: cannot read the spec: {'no such file' if not path.exists() else 'not a regular file'}")
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the spec: {exc.strerror}") from exc
    if len(raw) > MAX_SPEC_BYTES:
        raise ConfigError(f"{path}: the spec is over {MAX_SPEC_BYTES >> 20} MiB; is this the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column});"
                          " save the file as UTF-8") from None


def load_spec(path: Path) -> PlatformSpec:
    return parse_spec(read_spec_text(path), str(path))


def key_location(path: Path, loc: tuple[Any, ...]) -> str:
    """``file:line`` of a key in a spec file (its nearest enclosing key if absent), for errors
    found after parsing, e.g. a deployment whose service cannot be imported."""
    try:
        node = yaml.compose(read_spec_text(path))
    except (ConfigError, yaml.YAMLError):
        node = None
    return f"{path}:{_nearest_line(_line_index(node), loc) if node is not None else 1}"
