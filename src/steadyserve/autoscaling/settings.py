"""What the spec says about autoscaling: per deployment ``autoscaling:``, per platform ``capacity:``.

    deployments:
      digits:
        service: examples/digits
        replicas: {min: 1, max: 8}       # the bounds; a range turns autoscaling on
        autoscaling:
          metric: inflight               # inflight | rps | cpu | queue
          target: 2                      # per replica, in the metric's unit
          predictive: {enabled: true, season_s: 86400}
    capacity:
      reserve_memory_mb: 1024

The defaults follow the Kubernetes HPA behaviour model (tolerance 10 %, scale-up at once by up
to 100 % or 4 replicas per 15 s, scale-down to the highest recommendation of the last 300 s)
and Knative's panic mode (a 6 s window; twice the capacity). docs/autoscaling.md has the table.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Metric = Literal["inflight", "rps", "cpu", "queue"]

# The target when the spec gives none: per replica, in the metric's unit.
DEFAULT_TARGETS: dict[str, float | None] = {"inflight": 2.0, "rps": None, "cpu": 70.0, "queue": 1.0}
DEFAULT_PANIC_WINDOW_S = 6.0
MAX_MEMORY_MB = 1 << 30  # a petabyte: past any machine, within what arithmetic on it stays exact
METRIC_UNITS = {"inflight": "calls in flight", "rps": "calls/s", "cpu": "% CPU", "queue": "queued calls"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ScalingRule(_Strict):
    """One direction of scaling (HPA ``behavior.scaleUp`` / ``scaleDown``). Giving either limit
    replaces both defaults (as giving HPA ``policies`` does): ``{max_replicas: 1}`` is one a period."""

    stabilization_s: float = Field(
        default=0.0, ge=0, le=3600,
        description="act on the least (up) / greatest (down) recommendation of this window: no flapping")
    period_s: float = Field(default=15.0, gt=0, le=3600, description="the rate limits below count over this period")
    max_replicas: int | None = Field(default=None, ge=1, le=64,
                                     description="at most this many replicas added / removed per period")
    max_percent: float | None = Field(default=None, gt=0, le=1000,
                                      description="at most this share of the count at the period's start per period")

    def allowed(self, start_count: int) -> int | None:
        """Replicas one period may change, the larger of the two limits (HPA's selectPolicy: Max);
        None: no limit."""
        limits = []
        if self.max_replicas is not None:
            limits.append(self.max_replicas)
        if self.max_percent is not None:
            limits.append(max(1, int(start_count * self.max_percent / 100.0)))
        return max(limits) if limits else None


def _rule_with_defaults(defaults: dict[str, Any]) -> Any:
    """A ``before`` validator filling one direction's defaults; either limit given replaces both."""
    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            given = dict(value)
            if "max_replicas" in given or "max_percent" in given:
                given.setdefault("max_replicas", None)
                given.setdefault("max_percent", None)
            return {**defaults, **given}
        return value
    return fill


def _predictive_shorthand(value: Any) -> Any:
    """``predictive: true`` is ``predictive: {enabled: true}`` (the defaults otherwise)."""
    return {"enabled": value} if isinstance(value, bool) else value


SCALE_UP_DEFAULTS: dict[str, Any] = {"stabilization_s": 0.0, "period_s": 15.0, "max_replicas": 4, "max_percent": 100.0}
SCALE_DOWN_DEFAULTS: dict[str, Any] = {"stabilization_s": 300.0, "period_s": 15.0, "max_percent": 100.0}


class PredictiveSettings(_Strict):
    """Forecast the call rate (Holt-Winters with a season) and be ready before a predictable rise."""

    enabled: bool = False
    season_s: float | Literal["auto"] = Field(
        default=86400.0, description="the load's period (a day); auto: found from the recorded rate")
    min_seasons: float = Field(default=1.0, ge=1, le=10, description="history needed before forecasts count")
    history_seasons: int = Field(default=7, ge=2, le=30, description="the model is fitted on at most this much")
    max_error: float = Field(
        default=0.3, gt=0, le=10,
        description="forecasts are ignored while their recent error (mean absolute / mean rate) is above this")
    lead_s: float | None = Field(
        default=None, gt=0, le=86400,
        description="how far ahead to be ready (default: the measured replica start-up time + one decision)")

    @model_validator(mode="after")
    def _enough_kept(self) -> PredictiveSettings:
        if self.min_seasons > self.history_seasons:
            raise ValueError(f"min_seasons ({self.min_seasons:g}) needs history_seasons >= it"
                             f" ({self.history_seasons} are kept)")
        return self

    @model_validator(mode="after")
    def _season(self) -> PredictiveSettings:
        if isinstance(self.season_s, float) and not 10 <= self.season_s <= 30 * 86400:
            raise ValueError("season_s must be between 10 s and 30 days, or auto")
        return self


class AutoscalingSettings(_Strict):
    metric: Metric = Field(default="inflight", description="what one replica should carry: see target")
    target: float | None = Field(
        default=None, gt=0, le=1e6,
        description="per replica: calls in flight (default 2), calls/s (required), CPU % (default 70; 100 = one"
                    " core), queued calls (default 1)")
    tolerance: float = Field(default=0.1, ge=0, lt=1, description="no change while load / capacity is within 1 ± this")
    decision_s: float = Field(default=5.0, gt=0, le=600, description="a decision this often")
    window_s: float = Field(default=60.0, gt=0, le=3600, description="the load is averaged over this (stable mode)")
    panic_window_s: float | None = Field(
        default=None, gt=0, le=600, description="the short window panic mode looks at (default: 6, at most window_s)")
    panic_threshold: float = Field(default=2.0, gt=1, le=100,
                                   description="panic when the short window's load exceeds this times the capacity")
    scale_up: Annotated[ScalingRule, BeforeValidator(_rule_with_defaults(SCALE_UP_DEFAULTS))] = \
        ScalingRule(**SCALE_UP_DEFAULTS)
    scale_down: Annotated[ScalingRule, BeforeValidator(_rule_with_defaults(SCALE_DOWN_DEFAULTS))] = \
        ScalingRule(**SCALE_DOWN_DEFAULTS)
    predictive: Annotated[PredictiveSettings, BeforeValidator(_predictive_shorthand)] = PredictiveSettings()
    idle_s: float = Field(default=300.0, gt=0, le=86400,
                          description="with replicas.min 0: scale to zero after this long without a call")
    cold_start_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="at zero replicas a call waits this long for the first one (then 503)")
    priority: int = Field(default=0, ge=-100, le=100,
                          description="when the machine's budget is short, higher priorities get replicas first")
    replica_cpus: float | None = Field(
        default=None, gt=0, le=1024, description="cores one replica uses, for the capacity budget (default: measured)")

    @model_validator(mode="after")
    def _target_known(self) -> AutoscalingSettings:
        if self.target is None and DEFAULT_TARGETS[self.metric] is None:
            raise ValueError(f"metric {self.metric} needs a target ({METRIC_UNITS[self.metric]} per replica)")
        if self.panic_window_s is not None and self.panic_window_s > self.window_s:
            raise ValueError(f"panic_window_s ({self.panic_window_s:g}) must not exceed window_s ({self.window_s:g})")
        if self.predictive.enabled and self.metric == "queue":
            raise ValueError("predictive needs metric inflight, rps or cpu: a queue's depth does not follow the call"
                             " rate")
        return self

    @property
    def short_window_s(self) -> float:
        return self.panic_window_s if self.panic_window_s is not None else min(DEFAULT_PANIC_WINDOW_S, self.window_s)

    @property
    def target_value(self) -> float:
        target = self.target if self.target is not None else DEFAULT_TARGETS[self.metric]
        assert target is not None
        return target


class CapacitySpec(_Strict):
    """The machine's budget for replicas (all deployments together). Read by ``steady up`` at start,
    as ``gateway:`` is (``steady deploy`` applies deployments only)."""

    cpus: float | None = Field(default=None, gt=0, le=4096, description="cores replicas may use (default: this"
                               " machine's, as the scheduler allows the controller)")
    memory_mb: int | None = Field(default=None, ge=64, le=MAX_MEMORY_MB,
                                  description="memory replicas may use (default: the machine's, or its cgroup limit)")
    reserve_cpus: float = Field(default=0.0, ge=0, le=4096, description="kept free for everything else")
    reserve_memory_mb: int = Field(default=512, ge=0, le=MAX_MEMORY_MB, description="kept free for everything else")
    replica_memory_mb: int = Field(
        default=256, ge=1, le=MAX_MEMORY_MB,
        description="a replica's memory before one has been measured (resources.memory_mb wins)")

    @model_validator(mode="after")
    def _reserve_fits(self) -> CapacitySpec:
        if self.cpus is not None and self.reserve_cpus >= self.cpus:
            raise ValueError(f"reserve_cpus ({self.reserve_cpus:g}) leaves nothing of cpus ({self.cpus:g}) for replicas")
        if self.memory_mb is not None and self.reserve_memory_mb >= self.memory_mb:
            raise ValueError(f"reserve_memory_mb ({self.reserve_memory_mb}) leaves nothing of memory_mb"
                             f" ({self.memory_mb}) for replicas")
        return self
