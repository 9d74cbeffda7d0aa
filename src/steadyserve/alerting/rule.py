"""One effective alert rule of one deployment: what it measures, when it holds, how it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .durations import format_duration
from .expressions import Expression
from .rulespec import Op
from .units import format_value, value_template

Origin = Literal["builtin", "spec", "slo"]


@dataclass(frozen=True)
class Rule:
    name: str
    deployment: str
    expr: Expression
    threshold: float
    op: Op = ">"
    for_s: float = 0.0
    severity: str = "warning"
    extra_labels: tuple[tuple[str, str], ...] = ()
    origin: Origin = "spec"

    @property
    def key(self) -> str:
        """Names the alert among all deployments' (what states and the store are keyed by)."""
        return f"{self.deployment}/{self.name}"

    def labels(self) -> dict[str, str]:
        return dict(sorted({"alertname": self.name, "deployment": self.deployment, "severity": self.severity,
                            **dict(self.extra_labels)}.items()))

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False  # no data never fires (as an empty PromQL result)
        if self.op == ">":
            return value > self.threshold
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<":
            return value < self.threshold
        return value <= self.threshold

    def summary(self) -> str:
        return f"{self.deployment}: {self.expr.describe()} {self.op} {format_value(self.expr.unit, self.threshold)}"

    def description(self, value: float | None) -> str:
        return self._description("no data" if value is None else format_value(self.expr.unit, value))

    def description_template(self) -> str:
        """``description`` as a Prometheus annotation template: the same text for the same value."""
        return self._description(value_template(self.expr.unit))

    def _description(self, shown: str) -> str:
        held = f" for {format_duration(self.for_s)}" if self.for_s > 0 else ""
        return (f"{self.expr.describe()} of {self.deployment} is {shown}"
                f" (alert at {self.op} {format_value(self.expr.unit, self.threshold)}{held})")

    def annotations(self, value: float | None) -> dict[str, str]:
        shown = "no data" if value is None else format_value(self.expr.unit, value)
        return {"summary": self.summary(), "description": self.description(value), "value": shown}

    def annotation_templates(self) -> dict[str, str]:
        """``annotations`` as Prometheus templates (the same text for the same ``$value``)."""
        return {"summary": self.summary(), "description": self.description_template(),
                "value": value_template(self.expr.unit)}

    def condition_promql(self) -> str:
        return self.expr.condition_promql(self.deployment, self.op, self.threshold)
