"""``slo:`` of a deployment in the spec: availability and latency objectives.

    slo:
      availability: 0.999          # 99.9% of calls answer without a 5xx
      latency: {threshold_ms: 250, objective: 0.99}   # 99% of calls within 250 ms
      period: 7d                   # the error budget's window (``steady slo``; at most 8d)
      window_scale: 1.0            # tests: 0.001 makes the 1 h burn window 3.6 s

Each objective gets the SRE workbook's multiwindow, multi-burn-rate alerts (``slo.py``),
named ``Steady<Availability|Latency>BudgetBurn<Fast|Medium|Slow>``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..metrics.catalog import LATENCY_BUCKETS_S
from .model import DurationS, Strict

Sli = Literal["availability", "latency"]
Speed = Literal["Fast", "Medium", "Slow"]
SLIS: tuple[Sli, ...] = ("availability", "latency")
SPEEDS: tuple[Speed, ...] = ("Fast", "Medium", "Slow")
DEFAULT_PERIOD_S = 7 * 86400.0
MAX_PERIOD_S = 8 * 86400.0  # what the metrics history keeps (control/observing.py RETAIN_S)


def burn_rule_name(sli: Sli, speed: Speed) -> str:
    return f"Steady{sli.capitalize()}BudgetBurn{speed}"


BURN_RULE_NAMES = frozenset(burn_rule_name(sli, speed) for sli in SLIS for speed in SPEEDS)
_BOUNDS_MS = tuple(round(bound * 1000, 6) for bound in LATENCY_BUCKETS_S)


class LatencyObjectiveSpec(Strict):
    threshold_ms: float = Field(gt=0, description="a call slower than this is bad; one of the histogram's bounds")
    objective: float = Field(gt=0, lt=1, description="the share of calls that must be faster, e.g. 0.99")

    @field_validator("threshold_ms")
    @classmethod
    def _a_bucket_bound(cls, value: float) -> float:
        # The SLI counts calls per histogram bucket: between two bounds it could only guess.
        if round(value, 6) not in _BOUNDS_MS:
            bounds = ", ".join(f"{b:g}" for b in _BOUNDS_MS)
            raise ValueError(f"{value:g} ms is not a bound of the latency histogram; use one of {bounds} (ms)")
        return value

    @property
    def threshold_s(self) -> float:
        return self.threshold_ms / 1000


class SloSpec(Strict):
    availability: float | None = Field(
        default=None,
        description="share of calls answered without a 5xx (shed calls, 503, count as failed; 4xx as good)")
    latency: LatencyObjectiveSpec | None = None
    period_s: DurationS = Field(default=DEFAULT_PERIOD_S, alias="period", gt=0,
                                description="the error budget's window, before window_scale (the history"
                                            " keeps 8 days)")
    window_scale: float = Field(
        default=1.0, ge=0.0001, le=1.0,
        description="multiplies every burn-rate window and the period; below 1 for tests only")

    @field_validator("availability")
    @classmethod
    def _a_share(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:
            raise ValueError(f"must be a share between 0 and 1, such as 0.999 for 99.9 %, not {value:g}")
        return value

    @field_validator("period_s")
    @classmethod
    def _period_in_history(cls, value: float) -> float:
        if value > MAX_PERIOD_S:
            raise ValueError("must be at most 8d: the metrics history keeps 8 days")
        return value

    @model_validator(mode="after")
    def _an_objective(self) -> SloSpec:
        if self.availability is None and self.latency is None:
            raise ValueError("give availability (e.g. 0.999), latency ({threshold_ms, objective}) or both")
        return self

    @property
    def scaled_period_s(self) -> float:
        return self.period_s * self.window_scale

    def objectives(self) -> dict[Sli, float]:
        found: dict[Sli, float] = {}
        if self.availability is not None:
            found["availability"] = self.availability
        if self.latency is not None:
            found["latency"] = self.latency.objective
        return found
