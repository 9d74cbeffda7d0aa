"""SLOs: the SLIs, the multiwindow multi-burn-rate alerts of the SRE workbook, the error budget.

An SLI is a bad-call ratio over a window: ``availability`` counts 5xx answers (a shed call,
503, is unavailability to its caller; 4xx are the caller's mistakes, good), ``latency`` counts
calls slower than ``threshold_ms`` (a bound of the latency histogram). The burn rate is that
ratio over the budget, ``1 - objective``: at 1x the budget lasts exactly the period.

==========  ======  ===========  ============  ========  ==============================
speed       burn    long window  short window  severity  budget spent when it fires
==========  ======  ===========  ============  ========  ==============================
Fast        14.4x   1h           5m            page      2% of 30 days in 1 hour
Medium      6x      6h           30m           page      5% of 30 days in 6 hours
Slow        1x      3d           6h            ticket    10% of 30 days in 3 days
==========  ======  ===========  ============  ========  ==============================

An alert fires while both windows burn faster than its rate: the long one says it matters,
the short one that it is still going on (so it resolves minutes after the burn stops).
Every window is multiplied by ``window_scale``. With an objective below 0.9306 the fast rule
cannot fire (14.4 times the budget is more than every call failing).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

from ..metrics import catalog
from ..metrics.history import History
from .durations import format_duration
from .expressions import Expression, promql_number, ratio_5xx, selector
from .rule import Rule
from .slospec import SLIS, Sli, SloSpec, Speed, burn_rule_name
from .units import Unit


@dataclass(frozen=True)
class BurnWindow:
    speed: Speed
    factor: float
    long_s: float
    short_s: float
    severity: str


BURN_WINDOWS = (
    BurnWindow("Fast", 14.4, 3600.0, 300.0, "page"),
    BurnWindow("Medium", 6.0, 6 * 3600.0, 1800.0, "page"),
    BurnWindow("Slow", 1.0, 3 * 86400.0, 6 * 3600.0, "ticket"),
)


def scaled(window: BurnWindow, scale: float) -> BurnWindow:
    return BurnWindow(window.speed, window.factor, window.long_s * scale, window.short_s * scale, window.severity)


# --- the SLIs --------------------------------------------------------------------------------
def bad_ratio(history: History, deployment: str, sli: Sli, slo: SloSpec, window_s: float,
              now: float) -> float | None:
    """The SLI's bad-call ratio over the window; None without calls."""
    if sli == "availability":
        return ratio_5xx(history, deployment, window_s, now)
    assert slo.latency is not None
    threshold_s = slo.latency.threshold_s
    by_bound = history.increase(f"{catalog.REQUEST_DURATION.name}_bucket", {"deployment": deployment}, window_s,
                                now, by=("le",))
    total = good = 0.0
    for labels, grew in by_bound.items():
        bound = float(dict(labels).get("le", "+Inf"))
        if math.isinf(bound):
            total += grew
        elif math.isclose(bound, threshold_s, rel_tol=1e-9):
            good += grew
    if total <= 0:
        return None
    return max(0.0, total - good) / total


def _le_matcher(bound_s: float) -> str:
    """The ``le`` value as the exposition writes it ("1.0"), or as Prometheus 3 normalises it ("1")."""
    written = "+Inf" if math.isinf(bound_s) else repr(float(bound_s))  # prometheus_client's, for these bounds
    plain = promql_number(bound_s)
    return written if written == plain else "~" + "|".join(v.replace(".", "\\.") for v in (written, plain))


def bad_ratio_promql(deployment: str, sli: Sli, slo: SloSpec, window_s: float) -> str:
    window = format_duration(window_s)
    if sli == "availability":
        name = catalog.REQUESTS.exposed_name
        return (f"(sum by (deployment) (rate({selector(name, deployment=deployment, code='~5..')}[{window}]))"
                f" or sum by (deployment) (rate({selector(name, deployment=deployment)}[{window}])) * 0)"
                f" / sum by (deployment) (rate({selector(name, deployment=deployment)}[{window}]))")
    assert slo.latency is not None
    bucket = f"{catalog.REQUEST_DURATION.name}_bucket"
    fast = selector(bucket, deployment=deployment, le=_le_matcher(slo.latency.threshold_s))
    every = selector(bucket, deployment=deployment, le="+Inf")
    return (f"1 - sum by (deployment) (rate({fast}[{window}]))"
            f" / sum by (deployment) (rate({every}[{window}]))")


def record_name(sli: Sli, window_s: float) -> str:
    return f"steady:slo_{sli}_bad:ratio_rate{format_duration(window_s)}"


def recording_rules(deployment: str, slo: SloSpec) -> list[tuple[str, str]]:
    """``(record, expr)`` of every SLI ratio the burn-rate alerts read, each window once."""
    rules: list[tuple[str, str]] = []
    for sli in slo.objectives():
        windows = sorted({w for b in BURN_WINDOWS for w in (b.long_s * slo.window_scale, b.short_s * slo.window_scale)})
        rules += [(record_name(sli, w), bad_ratio_promql(deployment, sli, slo, w)) for w in windows]
    return rules


# --- burn-rate alerts -----------------------------------------------------------------------
@dataclass(frozen=True)
class BurnRate(Expression):
    """The long window's burn rate, where the short window's also exceeds ``factor``.

    That gate makes it PromQL's ``long and short > factor``: below it there is no value."""

    sli: Sli
    slo: SloSpec
    factor: float
    long_s: float
    short_s: float
    unit: ClassVar[Unit] = "burn"

    @property
    def budget(self) -> float:
        return 1 - self.slo.objectives()[self.sli]

    def value(self, history: History, deployment: str, now: float) -> float | None:
        short = bad_ratio(history, deployment, self.sli, self.slo, self.short_s, now)
        if short is None or not short / self.budget > self.factor:
            return None
        long = bad_ratio(history, deployment, self.sli, self.slo, self.long_s, now)
        return None if long is None else long / self.budget

    def _burn(self, deployment: str, window_s: float) -> str:
        objective = promql_number(self.slo.objectives()[self.sli])
        return f"{selector(record_name(self.sli, window_s), deployment=deployment)} / (1 - {objective})"

    def promql(self, deployment: str) -> str:
        return (f"{self._burn(deployment, self.long_s)}"
                f" and {self._burn(deployment, self.short_s)} > {promql_number(self.factor)}")

    def condition_promql(self, deployment: str, op: str, threshold: float) -> str:
        return f"({self.promql(deployment)}) {op} {promql_number(threshold)}"

    def describe(self) -> str:
        return (f"{self.sli} error budget burn over {format_duration(self.long_s)}"
                f" and {format_duration(self.short_s)}")


def burn_rules(deployment: str, slo: SloSpec | None, disabled: Collection[str] = ()) -> list[Rule]:
    if slo is None:
        return []
    rules = []
    for sli in slo.objectives():
        for window in BURN_WINDOWS:
            name = burn_rule_name(sli, window.speed)
            if name in disabled:
                continue
            w = scaled(window, slo.window_scale)
            rules.append(Rule(name=name, deployment=deployment,
                              expr=BurnRate(sli, slo, w.factor, w.long_s, w.short_s),
                              threshold=w.factor, op=">", severity=w.severity,
                              extra_labels=(("slo", sli),), origin="slo"))
    return rules


# --- what `steady slo` shows ----------------------------------------------------------------
@dataclass(frozen=True)
class BurnReading:
    speed: Speed
    factor: float
    long_s: float
    short_s: float
    long_burn: float | None
    short_burn: float | None

    @property
    def burning(self) -> bool:
        return (self.long_burn is not None and self.short_burn is not None
                and self.long_burn > self.factor and self.short_burn > self.factor)


@dataclass(frozen=True)
class Budget:
    """The error budget of one objective over the (scaled) period, from the history there is."""

    sli: Sli
    objective: float
    period_s: float
    calls: float  # calls counted in the period (what the history holds of it)
    bad_calls: float
    data_since: float | None  # the oldest sample read; later than now - period_s: a shorter history

    @property
    def bad_ratio(self) -> float | None:
        return self.bad_calls / self.calls if self.calls > 0 else None

    @property
    def allowed_bad_calls(self) -> float:
        return (1 - self.objective) * self.calls

    @property
    def consumed(self) -> float | None:
        """Share of the budget spent: 1.0 is all of it; above 1, the SLO is missed."""
        ratio = self.bad_ratio
        return None if ratio is None else ratio / (1 - self.objective)

    @property
    def remaining(self) -> float | None:
        consumed = self.consumed
        return None if consumed is None else 1 - consumed

    @property
    def sli_value(self) -> float | None:
        """The good ratio over the period (what is compared with the objective)."""
        ratio = self.bad_ratio
        return None if ratio is None else 1 - ratio


def _calls(history: History, deployment: str, sli: Sli, window_s: float, now: float) -> tuple[float, float | None]:
    if sli == "availability":
        name, matchers = catalog.REQUESTS.exposed_name, {"deployment": deployment}
    else:
        name, matchers = f"{catalog.REQUEST_DURATION.name}_bucket", {"deployment": deployment, "le": "+Inf"}
    series = history.select(name, matchers, now - window_s, now)
    firsts = [samples[0][0] for samples in series.values() if samples]
    since = max(min(firsts), now - window_s) if firsts else None
    return history.total_increase(name, matchers, window_s, now), since


def budget(history: History, deployment: str, slo: SloSpec, now: float) -> list[Budget]:
    """One ``Budget`` per objective of ``slo``, over ``slo.scaled_period_s`` up to ``now``."""
    period_s = slo.scaled_period_s
    found = []
    for sli, objective in slo.objectives().items():
        calls, since = _calls(history, deployment, sli, period_s, now)
        ratio = bad_ratio(history, deployment, sli, slo, period_s, now)
        found.append(Budget(sli, objective, period_s, calls, 0.0 if ratio is None else ratio * calls, since))
    return found


def burn_rates(history: History, deployment: str, slo: SloSpec, now: float) -> dict[Sli, list[BurnReading]]:
    readings: dict[Sli, list[BurnReading]] = {}
    for sli, objective in slo.objectives().items():
        allowed = 1 - objective
        rows = []
        for window in BURN_WINDOWS:
            w = scaled(window, slo.window_scale)
            long = bad_ratio(history, deployment, sli, slo, w.long_s, now)
            short = bad_ratio(history, deployment, sli, slo, w.short_s, now)
            rows.append(BurnReading(w.speed, w.factor, w.long_s, w.short_s,
                                    None if long is None else long / allowed,
                                    None if short is None else short / allowed))
        readings[sli] = rows
    return readings


__all__ = ["BURN_WINDOWS", "SLIS", "Budget", "BurnRate", "BurnReading", "BurnWindow", "bad_ratio",
           "bad_ratio_promql", "budget", "burn_rates", "burn_rules", "record_name", "recording_rules"]
