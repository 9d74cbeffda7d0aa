"""The effective alert rules of one deployment: built-ins, the spec's own, SLO burn rates.

    rules_for("digits", spec.alerts, spec.slo)
    # [Rule(SteadyHighErrorRatio ...), ..., Rule(SteadyAvailabilityBudgetBurnFast ...), ...]

Built-ins come first (as changed by spec entries of the same name), then the spec's own rules
in their order, then the SLO's burn-rate rules; ``enabled: false`` leaves a rule out.
"""

from __future__ import annotations

from collections.abc import Sequence

from .expressions import expression_of
from .rule import Origin, Rule
from .rulespec import BUILTIN_BY_NAME, AlertRuleSpec, disabled_names, effective_specs
from .slo import burn_rules
from .slospec import SloSpec


def rule_of(deployment: str, spec: AlertRuleSpec, origin: Origin = "spec") -> Rule:
    """A complete, enabled ``AlertRuleSpec`` (as ``effective_specs`` returns them) as a Rule."""
    assert spec.expr is not None and spec.threshold is not None  # effective_specs checked it
    expr = expression_of(spec.expr, spec.effective_window_s, spec.quantile, spec.handler)
    extra = dict(spec.labels)
    if spec.handler is not None:
        extra["handler"] = spec.handler
    return Rule(name=spec.name, deployment=deployment, expr=expr, threshold=spec.threshold, op=spec.op,
                for_s=spec.for_s, severity=spec.severity, extra_labels=tuple(sorted(extra.items())), origin=origin)


def rules_for(deployment: str, spec_rules: Sequence[AlertRuleSpec] = (), slo: SloSpec | None = None) -> list[Rule]:
    """Every rule evaluated for ``deployment``; the spec was validated, so this does not raise."""
    rules = [rule_of(deployment, spec, "builtin" if spec.name in BUILTIN_BY_NAME else "spec")
             for spec in effective_specs(spec_rules)]
    return rules + burn_rules(deployment, slo, disabled_names(spec_rules))
