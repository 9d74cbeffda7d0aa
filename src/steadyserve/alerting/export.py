"""The alert rules as a Prometheus rule file: what ``steady export prometheus-rules`` writes.

One group per deployment, ``steady-<deployment>``: the SLO's recording rules first (the bad-call
ratio of each SLI over each burn-rate window), then every alerting rule ``rules_for`` gives:
built-ins as the spec changed them, the spec's own, the burn-rate alerts. Labels, annotations
and thresholds are those of our own notifications, so Prometheus and steadyserve say the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from .durations import format_duration
from .rule import Rule
from .rules import rules_for
from .rulespec import AlertRuleSpec
from .slo import recording_rules
from .slospec import SloSpec

HEADER = ("# Prometheus alerting rules of steadyserve (steady export prometheus-rules).\n"
          "# They read the metrics the gateway and the controller expose; check with: promtool check rules FILE\n")


@dataclass(frozen=True)
class DeploymentAlerting:
    """What a deployment's spec says about alerting: its ``alerts`` and its ``slo``."""

    alerts: Sequence[AlertRuleSpec] = ()
    slo: SloSpec | None = None

    def rules(self, deployment: str) -> list[Rule]:
        return rules_for(deployment, self.alerts, self.slo)


def group_name(deployment: str) -> str:
    return f"steady-{deployment}"


def alerting_rule(rule: Rule) -> dict[str, Any]:
    entry: dict[str, Any] = {"alert": rule.name, "expr": rule.condition_promql()}
    if rule.for_s > 0:
        entry["for"] = format_duration(rule.for_s)
    entry["labels"] = {k: v for k, v in rule.labels().items() if k != "alertname"}
    entry["annotations"] = rule.annotation_templates()
    return entry


def rule_groups(deployments: Mapping[str, DeploymentAlerting]) -> dict[str, Any]:
    groups = []
    for name in sorted(deployments):
        alerting = deployments[name]
        entries: list[dict[str, Any]] = []
        if alerting.slo is not None:
            entries += [{"record": record, "expr": expr} for record, expr in recording_rules(name, alerting.slo)]
        entries += [alerting_rule(rule) for rule in alerting.rules(name)]
        groups.append({"name": group_name(name), "rules": entries})
    return {"groups": groups}


def to_yaml(document: Mapping[str, Any], header: str = "") -> str:
    text: str = yaml.safe_dump(dict(document), sort_keys=False, width=10_000, allow_unicode=True)
    return header + text


def prometheus_rules(deployments: Mapping[str, DeploymentAlerting]) -> str:
    """The rule file's text."""
    return to_yaml(rule_groups(deployments), HEADER)
