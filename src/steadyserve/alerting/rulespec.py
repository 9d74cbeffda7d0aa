"""``alerts:`` of a deployment in the spec, and the built-in rules every deployment gets.

    alerts:
      - name: SlowDigits              # a new rule: expr and threshold required
        expr: latency_p99
        threshold: 0.5                # seconds (see the unit of each expr below)
        window: 5m
        for: 5m
        severity: critical
      - name: SteadyHighErrorRatio    # a built-in's name: change only what is given
        threshold: 0.01
      - name: SteadyHighMemory        # ... or turn it off
        enabled: false

An entry naming a built-in rule (``BUILTIN_RULES``) changes the fields it gives; one that
gives another ``expr`` replaces the built-in. An SLO burn-rate rule can only be turned off.

==================  =====================================================  =================
expr                value                                                  threshold unit
==================  =====================================================  =================
error_ratio         5xx answers / all answers over ``window``              ratio 0..1
shed_ratio          calls shed by admission / all admission decisions      ratio 0..1
latency_p50/90/99   that quantile of gateway latency over ``window``       seconds
latency_quantile    the ``quantile`` given (0 < q < 1)                     seconds
inflight            calls in flight at the gateways now                    calls
capacity_limited    1 while the autoscaler wants more than the budget      0 or 1
memory_ratio        the largest replica's resident memory / its limit      ratio 0..1
memory_bytes        the largest replica's resident memory                  bytes
restarts            replica restarts over ``window``                       restarts
log_findings        new error templates, rate jumps over ``window``        findings
==================  =====================================================  =================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from .model import DurationS, Strict
from .slospec import BURN_RULE_NAMES

ExprName = Literal["error_ratio", "shed_ratio", "latency_p50", "latency_p90", "latency_p99", "latency_quantile",
                   "inflight", "capacity_limited", "memory_ratio", "memory_bytes", "restarts", "log_findings"]
Op = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical", "page", "ticket"]

WINDOWED: frozenset[str] = frozenset({"error_ratio", "shed_ratio", "latency_p50", "latency_p90", "latency_p99",
                                      "latency_quantile", "restarts", "log_findings"})
RATIOS: frozenset[str] = frozenset({"error_ratio", "shed_ratio", "memory_ratio"})
PER_HANDLER: frozenset[str] = frozenset({"error_ratio", "latency_p50", "latency_p90", "latency_p99",
                                         "latency_quantile"})
DEFAULT_WINDOW_S = 300.0
RULE_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
LABEL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
HANDLER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
RESERVED_LABELS = frozenset({"alertname", "deployment", "severity", "slo", "handler"})
MAX_LABEL_VALUE_CHARS = 200


class AlertRuleSpec(Strict):
    name: str = Field(pattern=RULE_NAME_PATTERN, description="the alertname; a built-in's name changes that rule")
    expr: ExprName | None = Field(default=None, description="what is measured (table above)")
    quantile: float | None = Field(default=None, gt=0, lt=1, description="for expr latency_quantile only")
    op: Op = Field(default=">", description="fires while `value op threshold` holds")
    threshold: float | None = Field(default=None, ge=0, description="in the unit of expr (table above)")
    window_s: DurationS | None = Field(
        default=None, alias="window", gt=0,
        description=f"for windowed exprs (ratios, latency, restarts); default {DEFAULT_WINDOW_S:g} s")
    for_s: DurationS = Field(default=0.0, alias="for", description="the condition holds this long before firing")
    severity: Severity = "warning"
    handler: str | None = Field(default=None, pattern=HANDLER_PATTERN,
                                description="only this handler's calls (error_ratio and latency exprs)")
    labels: dict[str, str] = Field(default={}, description="extra labels for routing in Alertmanager")
    enabled: bool = True

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not re.fullmatch(LABEL_NAME_PATTERN, key) or key.startswith("__"):
                raise ValueError(f"label name {key!r} must match {LABEL_NAME_PATTERN} and not start with '__'")
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by steadyserve; reserved: {', '.join(sorted(RESERVED_LABELS))}")
            if len(item) > MAX_LABEL_VALUE_CHARS or not item.isprintable():
                raise ValueError(f"label {key}: the value must be printable and at most {MAX_LABEL_VALUE_CHARS} chars")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertRuleSpec:
        # What holds whatever else a built-in fills in; completeness is checked after merging.
        if self.expr is None:
            return self
        if self.quantile is not None and self.expr != "latency_quantile":
            raise ValueError(f"quantile is for expr latency_quantile, not {self.expr}")
        if self.expr == "latency_quantile" and self.quantile is None:
            raise ValueError("expr latency_quantile needs quantile (e.g. 0.95)")
        if self.window_s is not None and self.expr not in WINDOWED:
            raise ValueError(f"window does not apply to {self.expr} (a reading now); leave it out")
        if self.handler is not None and self.expr not in PER_HANDLER:
            raise ValueError(f"handler does not apply to {self.expr}: only error_ratio and latency exprs have it")
        if self.threshold is not None and self.expr in RATIOS and self.threshold > 1:
            raise ValueError(f"threshold {self.threshold:g} of {self.expr} is a ratio: between 0 and 1 (0.05 = 5%)")
        return self

    @property
    def effective_window_s(self) -> float:
        return self.window_s if self.window_s is not None else DEFAULT_WINDOW_S


def _builtin(**fields: object) -> AlertRuleSpec:
    return AlertRuleSpec.model_validate(fields)


BUILTIN_RULES: tuple[AlertRuleSpec, ...] = (
    # 1 call in 20 failing for 2 minutes: a bad revision, a broken dependency.
    _builtin(name="SteadyHighErrorRatio", expr="error_ratio", threshold=0.05, window="5m", **{"for": "2m"},
             severity="critical"),
    # Calls slower than 2.5 s for 10 minutes (2.5 s: a histogram bound, so the quantile is exact there).
    _builtin(name="SteadyHighLatencyP99", expr="latency_p99", threshold=2.5, window="5m", **{"for": "10m"},
             severity="warning"),
    # Within 10% of the replacement threshold (only where resources.memory_mb is set).
    _builtin(name="SteadyHighMemory", expr="memory_ratio", threshold=0.9, **{"for": "5m"}, severity="warning"),
    # More than 3 restarts in 10 minutes: a crash loop the supervisor is backing off from.
    _builtin(name="SteadyRestarting", expr="restarts", threshold=3, window="10m", severity="critical"),
    # Admission control turning away 1 call in 10 for 5 minutes: too few replicas.
    _builtin(name="SteadyHighShedRatio", expr="shed_ratio", threshold=0.1, window="5m", **{"for": "5m"},
             severity="warning"),
    # The autoscaler wants more replicas than the machine's CPU and memory budget allows.
    _builtin(name="SteadyCapacityLimited", expr="capacity_limited", threshold=0.5, **{"for": "1m"},
             severity="warning"),
)
BUILTIN_BY_NAME = {rule.name: rule for rule in BUILTIN_RULES}


def _merged(change: AlertRuleSpec, base: AlertRuleSpec) -> AlertRuleSpec:
    if change.expr is not None and change.expr != base.expr:
        return change  # another measure altogether: nothing of the built-in applies
    fields = base.model_dump()
    fields.update({key: getattr(change, key) for key in change.model_fields_set})
    return AlertRuleSpec.model_validate(fields)


def _complete(rule: AlertRuleSpec) -> AlertRuleSpec:
    if rule.enabled and (rule.expr is None or rule.threshold is None):
        builtins = ", ".join(BUILTIN_BY_NAME)
        missing = " and ".join(key for key in ("expr", "threshold") if getattr(rule, key) is None)
        raise ValueError(f"alert {rule.name}: give {missing} (or name a built-in rule to change it:"
                         f" {builtins})")
    return rule


def effective_specs(spec_rules: Sequence[AlertRuleSpec]) -> list[AlertRuleSpec]:
    """The built-ins changed by the spec's entries of the same name, then the spec's own rules;
    the disabled left out. ValueError naming the rule if one is incomplete or named twice."""
    given: dict[str, AlertRuleSpec] = {}
    for rule in spec_rules:
        if rule.name in given:
            raise ValueError(f"alert {rule.name} is given twice")
        given[rule.name] = rule
    effective: list[AlertRuleSpec] = []
    for base in BUILTIN_RULES:
        change = given.pop(base.name, None)
        effective.append(base if change is None else _merged(change, base))
    for name, rule in given.items():
        if not rule.enabled and rule.expr is None and name not in BURN_RULE_NAMES:  # off what does not exist: a typo
            raise ValueError(f"alert {name}: enabled: false turns off a built-in or SLO rule, and there is no"
                             f" rule {name}; built-ins: {', '.join(BUILTIN_BY_NAME)}; SLO rules:"
                             f" {', '.join(sorted(BURN_RULE_NAMES))}")
        if name in BURN_RULE_NAMES:
            if rule.model_fields_set - {"name", "enabled"}:
                raise ValueError(f"alert {name} is an SLO burn-rate rule: it can only be turned off"
                                 " (enabled: false); change the slo instead")
            continue
        effective.append(rule)
    return [_complete(rule) for rule in effective if rule.enabled]


def _valid(spec_rules: list[AlertRuleSpec]) -> list[AlertRuleSpec]:
    effective_specs(spec_rules)
    return spec_rules


AlertRules = Annotated[list[AlertRuleSpec], AfterValidator(_valid)]
"""The type of ``DeploymentSpec.alerts``: entries checked together with the built-ins."""


def disabled_names(spec_rules: Sequence[AlertRuleSpec]) -> frozenset[str]:
    return frozenset(rule.name for rule in spec_rules if not rule.enabled)
