"""promtool unit tests of the exported rules: for each rule, series that make it fire and
series that do not (``promtool test rules FILE``).

Every scenario is also evaluated here, over the same samples, with the rule's Python
expression (``History``): a scenario that would not do what it claims is an error, and the
annotations promtool must see are our own text for our own value, so the tests also pin
that Prometheus and steadyserve compute and word an alert the same way.

A scenario is constant rates from time 0 (a burn-rate rule also gets "the burn stopped": a
long window still above the rate, the short one clean), evaluated once the longest window and
the rule's ``for`` have passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..metrics import catalog
from ..metrics.history import History
from ..metrics.query import Labels, labels_of
from .durations import format_duration
from .export import DeploymentAlerting
from .expressions import (
    CapacityLimited,
    ErrorRatio,
    Expression,
    Inflight,
    LatencyQuantile,
    LogFindings,
    MemoryBytes,
    MemoryRatio,
    Restarts,
    ShedRatio,
)
from .rule import Rule
from .slo import BurnRate, bad_ratio

Side = Literal["above", "below"]
Run = tuple[float, float, int]  # promtool's "start+increment x count": count + 1 values
CALLS_PER_STEP = 100.0
MEMORY_LIMIT_BYTES = float(1 << 30)
GAUGE_STEP_S = 60.0  # within Prometheus's 5m lookback
EVALUATIONS = 200  # of the longest scenario: windows are about the input samples, not evaluations


class ScenarioError(AssertionError):
    """A generated scenario does not do what it claims (a bug here, not in the rules)."""


@dataclass
class SeriesSet:
    """Input series of one scenario: ``steps`` steps of ``step_s`` after time 0, accumulated
    exactly as promtool expands its ``start+increment x count`` notation."""

    steps: int
    step_s: float
    runs: dict[tuple[str, Labels], list[Run]] = field(default_factory=dict)

    def counter(self, name: str, labels: Mapping[str, str], rates: list[tuple[float, int]]) -> None:
        """A counter from 0 at time 0, growing ``rate`` per step for ``n`` steps, stretch after
        stretch (the ``n`` add up to ``steps``)."""
        runs: list[Run] = [(0.0, 0.0, 0)]
        value = 0.0
        for rate, n in rates:
            if n <= 0:
                continue
            value += rate
            runs.append((value, rate, n - 1))
            for _ in range(n - 1):
                value += rate
        self.runs[(name, labels_of(labels))] = runs

    def gauge(self, name: str, labels: Mapping[str, str], value: float) -> None:
        self.runs[(name, labels_of(labels))] = [(value, 0.0, self.steps)]

    def values(self, key: tuple[str, Labels]) -> list[float]:
        out: list[float] = []
        for start, increment, count in self.runs[key]:
            value = start
            for _ in range(count + 1):
                out.append(value)
                value += increment
        return out

    def promtool(self) -> list[dict[str, str]]:
        found = []
        for (name, labels), runs in sorted(self.runs.items()):
            selector = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"
            text = " ".join(f"{start!r}{'+' if increment >= 0 else ''}{increment!r}x{count}"
                            for start, increment, count in runs)
            found.append({"series": selector, "values": text})
        return found

    def history(self) -> History:
        history = History(step_s=self.step_s, memory_s=(self.steps + 2) * self.step_s)
        columns = {key: self.values(key) for key in self.runs}
        for i in range(self.steps + 1):
            history.add(i * self.step_s, {key: values[i] for key, values in columns.items() if i < len(values)})
        return history


# --- values on one side of a threshold ----------------------------------------------------
def _ratio_on(side: Side, threshold: float) -> float | None:
    if side == "above":
        return None if threshold >= 1 else (threshold + 1) / 2
    return None if threshold <= 0 else threshold / 2


def _amount_on(side: Side, threshold: float) -> float | None:
    if side == "above":
        return threshold * 2 if threshold > 0 else 1.0
    return None if threshold <= 0 else threshold / 2


def _requests(series: SeriesSet, deployment: str, handler: str | None, bad_ratio: float,
              segments: list[tuple[float, int]] | None = None) -> None:
    """Calls with ``bad_ratio`` of 5xx (``segments``: the bad share per stretch of steps)."""
    segments = segments or [(bad_ratio, series.steps)]
    labels = {"deployment": deployment, "revision": "1", "handler": handler or "predict"}
    name = catalog.REQUESTS.exposed_name
    series.counter(name, {**labels, "code": "500"}, [(CALLS_PER_STEP * share, n) for share, n in segments])
    series.counter(name, {**labels, "code": "200"}, [(CALLS_PER_STEP * (1 - share), n) for share, n in segments])


def _histogram(series: SeriesSet, deployment: str, handler: str | None,
               per_bucket: Mapping[float, float]) -> None:
    """Calls per step observed in each bucket (by its upper bound), as cumulative ``le`` series."""
    bounds = [*catalog.LATENCY_BUCKETS_S, math.inf]
    name = f"{catalog.REQUEST_DURATION.name}_bucket"
    for bound in bounds:
        rate = sum(n for upper, n in per_bucket.items() if upper <= bound)
        le = "+Inf" if math.isinf(bound) else repr(float(bound))
        series.counter(name, {"deployment": deployment, "handler": handler or "predict", "le": le},
                       [(rate, series.steps)])


def _latency_bucket(q: float, side: Side, threshold_s: float) -> float | None:
    """The upper bound of a bucket whose q-quantile (all calls in it) is on ``side`` of the threshold."""
    lower = 0.0
    candidates = []
    for upper in catalog.LATENCY_BUCKETS_S:
        value = lower + (upper - lower) * q
        if (value > threshold_s) if side == "above" else (value < threshold_s):
            candidates.append(upper)
        lower = upper
    if not candidates:
        return None
    return candidates[0] if side == "above" else candidates[-1]


def _fill(series: SeriesSet, rule: Rule, side: Side) -> bool:
    """Add series making the rule's value lie on ``side`` of its threshold; False: impossible."""
    expr, d, t = rule.expr, rule.deployment, rule.threshold
    if isinstance(expr, ErrorRatio):
        ratio = _ratio_on(side, t)
        if ratio is not None:
            _requests(series, d, expr.handler, ratio)
        return ratio is not None
    if isinstance(expr, ShedRatio):
        ratio = _ratio_on(side, t)
        if ratio is not None:
            name, labels = catalog.ADMISSION.exposed_name, {"deployment": d}
            series.counter(name, {**labels, "decision": "shed"}, [(CALLS_PER_STEP * ratio, series.steps)])
            series.counter(name, {**labels, "decision": "admitted"}, [(CALLS_PER_STEP * (1 - ratio), series.steps)])
        return ratio is not None
    if isinstance(expr, LatencyQuantile):
        bucket = _latency_bucket(expr.quantile, side, t)
        if bucket is not None:
            _histogram(series, d, expr.handler, {bucket: CALLS_PER_STEP})
        return bucket is not None
    if isinstance(expr, (Inflight, CapacityLimited)):
        amount = _amount_on(side, t)
        if amount is not None:
            name = catalog.INFLIGHT.exposed_name if isinstance(expr, Inflight) else catalog.CAPACITY_LIMITED.exposed_name
            series.gauge(name, {"deployment": d}, amount)
        return amount is not None
    if isinstance(expr, (MemoryRatio, MemoryBytes)):
        amount = _ratio_on(side, t) if isinstance(expr, MemoryRatio) else _amount_on(side, t)
        if amount is None:
            return False
        resident = amount * MEMORY_LIMIT_BYTES if isinstance(expr, MemoryRatio) else amount
        name = catalog.REPLICA_MEMORY.exposed_name
        series.gauge(name, {"deployment": d, "replica": "r0"}, resident)
        series.gauge(name, {"deployment": d, "replica": "r1"}, resident / 2)
        series.gauge(catalog.REPLICA_MEMORY_LIMIT.exposed_name, {"deployment": d}, MEMORY_LIMIT_BYTES)
        return True
    if isinstance(expr, (Restarts, LogFindings)):
        amount = _amount_on(side, t)
        if amount is not None:
            name, labels = ((catalog.RESTARTS.exposed_name, {"deployment": d}) if isinstance(expr, Restarts)
                            else (catalog.LOG_FINDINGS.exposed_name, {"deployment": d, "kind": "new_error_template"}))
            series.counter(name, labels, [(amount * series.step_s / expr.window_s, series.steps)])
        return amount is not None
    if isinstance(expr, BurnRate):
        burn = _amount_on(side, t)
        bad = None if burn is None else burn * expr.budget
        if bad is not None and bad > 1:
            bad = (t * expr.budget + 1) / 2 if t * expr.budget < 1 else None
        if bad is None:
            return False
        _bad_calls(series, expr, d, [(bad, series.steps)])
        return True
    return False


def _bad_calls(series: SeriesSet, expr: BurnRate, deployment: str, segments: list[tuple[float, int]]) -> None:
    if expr.sli == "availability":
        _requests(series, deployment, None, segments[0][0], segments)
        return
    assert expr.slo.latency is not None
    threshold_s = expr.slo.latency.threshold_s
    bounds = list(catalog.LATENCY_BUCKETS_S)
    slower = next((b for b in bounds if b > threshold_s + 1e-12), math.inf)
    name = f"{catalog.REQUEST_DURATION.name}_bucket"
    for bound in [*bounds, math.inf]:
        shares = [((1 - bad if bound >= threshold_s - 1e-12 else 0.0) + (bad if bound >= slower else 0.0), n)
                  for bad, n in segments]
        le = "+Inf" if math.isinf(bound) else repr(float(bound))
        series.counter(name, {"deployment": deployment, "handler": "predict", "le": le},
                       [(CALLS_PER_STEP * share, n) for share, n in shares])


# --- the test file --------------------------------------------------------------------------
def windows_of(expr: Expression) -> list[float]:
    if isinstance(expr, BurnRate):
        return [expr.long_s, expr.short_s]
    window = getattr(expr, "window_s", None)
    return [float(window)] if isinstance(window, (int, float)) else []


def _round_down(seconds: float) -> float:
    """Whole minutes, seconds or milliseconds: window edges then fall on samples exactly."""
    if seconds >= 60:
        return math.floor(seconds / 60) * 60.0
    if seconds >= 1:
        return float(math.floor(seconds))
    return max(0.001, math.floor(seconds * 1000) / 1000)


def series_step_s(rule: Rule) -> float:
    """Input samples this far apart: five in the rule's shortest window (a gauge: one a minute)."""
    windows = windows_of(rule.expr)
    return _round_down(min(windows) / 5 if windows else GAUGE_STEP_S)


@dataclass(frozen=True)
class Scenario:
    name: str
    rule: Rule
    series: SeriesSet
    eval_s: float  # when promtool looks: on the evaluation grid, the window and `for` passed
    fires: bool


def _warm_up_s(rule: Rule) -> float:
    """From then on a scenario's value is steady: its longest window is full."""
    return max([0.0, *windows_of(rule.expr)]) + 3 * series_step_s(rule)


def evaluation_interval_s(rules: list[Rule]) -> float:
    """One interval for the whole file (promtool has one): about ``EVALUATIONS`` in the longest
    scenario (a three-day window then costs what a five-minute one does), but short enough that
    the shortest window's scenario stays short: promtool loads at most 10,000 samples a query."""
    longest = max([GAUGE_STEP_S, *(_warm_up_s(rule) + rule.for_s for rule in rules)])
    shortest = min([math.inf, *(w for rule in rules for w in windows_of(rule.expr))])
    return _round_down(min(longest / EVALUATIONS, 100 * shortest))


def eval_time_s(rule: Rule, interval_s: float) -> float:
    """The first evaluation where the condition holds (once warmed up) plus ``for``, on the grid."""
    holds_from = math.ceil(_warm_up_s(rule) / interval_s) * interval_s
    return holds_from + math.ceil(rule.for_s / interval_s) * interval_s


def scenarios(rule: Rule, interval_s: float = GAUGE_STEP_S) -> list[Scenario]:
    step_s = series_step_s(rule)
    eval_s = eval_time_s(rule, interval_s)
    steps = math.ceil(eval_s / step_s)
    holds_side: Side = "above" if rule.op in (">", ">=") else "below"
    other: Side = "below" if holds_side == "above" else "above"
    found = []
    for name, side, fires in (("fires", holds_side, True), ("stays quiet", other, False)):
        series = SeriesSet(steps, step_s)
        if _fill(series, rule, side):
            found.append(Scenario(name, rule, series, eval_s, fires))
    if isinstance(rule.expr, BurnRate):
        stopped = _stopped_burn(rule, rule.expr, step_s, eval_s)
        if stopped is not None:
            found.append(stopped)
    return found


def _stopped_burn(rule: Rule, expr: BurnRate, step_s: float, eval_s: float) -> Scenario | None:
    """Burning hard until two short windows ago, clean since: the long window still says burn."""
    steps = math.ceil(eval_s / step_s)
    burning_steps = math.floor((eval_s - 2 * expr.short_s) / step_s)
    bad = min(1.0, 3 * expr.factor * expr.budget)
    series = SeriesSet(steps, step_s)
    _bad_calls(series, expr, rule.deployment, [(bad, burning_steps), (0.0, steps - burning_steps)])
    long = bad_ratio(series.history(), rule.deployment, expr.sli, expr.slo, expr.long_s, eval_s)
    if long is None or not long / expr.budget > expr.factor:
        return None  # too small a budget to show it: the plain "stays quiet" case covers the rule
    return Scenario("stays quiet once the burn stopped", rule, series, eval_s, False)


def _expected_alerts(scenario: Scenario) -> list[dict[str, Any]]:
    rule = scenario.rule
    value = rule.expr.value(scenario.series.history(), rule.deployment, scenario.eval_s)
    if rule.holds(value) != scenario.fires:
        raise ScenarioError(f"{rule.key} {scenario.name}: the value here is {value!r}, which"
                            f" {'does not hold' if scenario.fires else 'holds'} ({rule.op} {rule.threshold})")
    if not scenario.fires:
        return []
    labels = {k: v for k, v in rule.labels().items() if k != "alertname"}
    return [{"exp_labels": labels, "exp_annotations": rule.annotations(value)}]


def promtool_tests(deployments: Mapping[str, DeploymentAlerting], rule_file: str) -> dict[str, Any]:
    """The ``promtool test rules`` document for the rule file ``prometheus_rules`` wrote."""
    rules = [rule for name in sorted(deployments) for rule in deployments[name].rules(name)]
    interval_s = evaluation_interval_s(rules)
    tests = []
    for rule in rules:
        for scenario in scenarios(rule, interval_s):
            tests.append({
                "name": f"{rule.key} {scenario.name}",
                "interval": format_duration(scenario.series.step_s),
                "input_series": scenario.series.promtool(),
                "alert_rule_test": [{
                    "eval_time": format_duration(scenario.eval_s),
                    "alertname": rule.name,
                    "exp_alerts": _expected_alerts(scenario),
                }],
            })
    return {"rule_files": [rule_file], "evaluation_interval": format_duration(interval_s),
            "tests": tests}
