"""The alerting part of the spec: rules, built-ins changed or turned off, SLOs, notifications."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from steadyserve.alerting.notifyspec import NotificationSettings
from steadyserve.alerting.rules import rules_for
from steadyserve.alerting.rulespec import BUILTIN_RULES, AlertRules, AlertRuleSpec, effective_specs
from steadyserve.alerting.slospec import BURN_RULE_NAMES, SloSpec


class Deployment(BaseModel):
    """As DeploymentSpec holds them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    alerts: AlertRules = []
    slo: SloSpec | None = None


def problem(data: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        Deployment.model_validate(data)
    return "\n".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in caught.value.errors())


@pytest.mark.parametrize("rule, says", [
    ({"name": "my alert", "expr": "inflight", "threshold": 1}, "alerts.0.name: String should match pattern"),
    ({"name": "X", "expr": "cpu", "threshold": 1}, "alerts.0.expr: Input should be 'error_ratio'"),
    ({"name": "X", "expr": "inflight"}, "alert X: give threshold (or name a built-in rule"),
    ({"name": "X", "threshold": 1}, "alert X: give expr (or name"),
    ({"name": "X"}, "alert X: give expr and threshold"),
    ({"name": "SteadyHighMemroy", "enabled": False}, "there is no rule SteadyHighMemroy; built-ins: SteadyHighErrorRatio"),
    ({"name": "X", "expr": "error_ratio", "threshold": 5}, "is a ratio: between 0 and 1 (0.05 = 5%)"),
    ({"name": "X", "expr": "inflight", "threshold": 1, "window": "5m"}, "window does not apply to inflight"),
    ({"name": "X", "expr": "latency_quantile", "threshold": 1}, "needs quantile"),
    ({"name": "X", "expr": "latency_p99", "threshold": 1, "quantile": 0.5}, "quantile is for expr latency_quantile"),
    ({"name": "X", "expr": "restarts", "threshold": 1, "handler": "predict"}, "handler does not apply to restarts"),
    ({"name": "X", "expr": "inflight", "threshold": 1, "for": "5 minutes"}, "alerts.0.for: Value error, '5 minutes' is not a duration"),
    ({"name": "X", "expr": "inflight", "threshold": 1, "labels": {"severity": "x"}}, "label 'severity' is set by steadyserve"),
    ({"name": "X", "expr": "inflight", "threshold": 1, "labels": {"a-b": "x"}}, "label name 'a-b' must match"),
    ({"name": "X", "expr": "inflight", "threshold": -1}, "greater than or equal to 0"),
    ({"name": "X", "expr": "inflight", "threshold": 1, "severity": "urgent"}, "Input should be 'info'"),
    ({"name": "X", "expr": "inflight", "threshold": 1, "when": "now"}, "Extra inputs are not permitted"),
    ({"name": "SteadyAvailabilityBudgetBurnFast", "severity": "info"}, "can only be turned off"),
])
def test_a_bad_rule_is_refused_with_a_clear_message(rule, says):
    assert says in problem({"alerts": [rule]})


def test_a_rule_named_twice_is_refused():
    rule = {"name": "X", "expr": "inflight", "threshold": 1}
    assert "alert X is given twice" in problem({"alerts": [rule, rule]})


@pytest.mark.parametrize("slo, says", [
    ({}, "give availability (e.g. 0.999), latency"),
    ({"availability": 1.0}, "must be a share between 0 and 1, such as 0.999 for 99.9 %, not 1"),
    ({"availability": 0.999, "window_scale": 0}, "greater than or equal to 0.0001"),
    ({"latency": {"threshold_ms": 300, "objective": 0.99}}, "300 ms is not a bound of the latency histogram; use one of"),
    ({"latency": {"threshold_ms": 250}}, "slo.latency.objective: Field required"),
    ({"availability": 0.99, "period": "forever"}, "is not a duration"),
])
def test_a_bad_slo_is_refused_with_a_clear_message(slo, says):
    assert says in problem({"slo": slo})


def test_every_deployment_gets_the_builtin_rules():
    names = [rule.name for rule in rules_for("d")]
    assert names == ["SteadyHighErrorRatio", "SteadyHighLatencyP99", "SteadyHighMemory", "SteadyRestarting",
                     "SteadyHighShedRatio", "SteadyCapacityLimited"]
    assert all(rule.origin == "builtin" for rule in rules_for("d"))


def test_an_entry_naming_a_builtin_changes_only_what_it_gives():
    changed = Deployment.model_validate({"alerts": [{"name": "SteadyHighErrorRatio", "threshold": 0.01}]})
    rule = next(r for r in rules_for("d", changed.alerts) if r.name == "SteadyHighErrorRatio")
    builtin = next(r for r in BUILTIN_RULES if r.name == "SteadyHighErrorRatio")
    assert (rule.threshold, rule.for_s, rule.severity) == (0.01, builtin.for_s, builtin.severity)


def test_an_entry_with_another_expr_replaces_the_builtin():
    spec = Deployment.model_validate({"alerts": [{"name": "SteadyHighMemory", "expr": "memory_bytes",
                                                  "threshold": 2e9}]})
    rule = next(r for r in rules_for("d", spec.alerts) if r.name == "SteadyHighMemory")
    assert (rule.expr.describe(), rule.for_s, rule.severity) == ("largest replica memory", 0.0, "warning")


@pytest.mark.parametrize("name", ["SteadyHighMemory", "SteadyLatencyBudgetBurnSlow"])
def test_enabled_false_turns_a_rule_off(name):
    spec = Deployment.model_validate({"alerts": [{"name": name, "enabled": False}],
                                      "slo": {"latency": {"threshold_ms": 250, "objective": 0.99}}})
    assert name not in [rule.name for rule in rules_for("d", spec.alerts, spec.slo)]


def test_the_spec_own_rules_follow_the_builtins_in_order():
    spec = Deployment.model_validate({"alerts": [
        {"name": "B", "expr": "inflight", "threshold": 10, "for": "1m", "severity": "critical",
         "labels": {"team": "ml"}},
        {"name": "A", "expr": "latency_p90", "threshold": 0.2, "handler": "predict", "window": "10m"},
    ]})
    rules = rules_for("d", spec.alerts)
    assert [r.name for r in rules[-2:]] == ["B", "A"]
    assert rules[-2].labels() == {"alertname": "B", "deployment": "d", "severity": "critical", "team": "ml"}
    assert rules[-1].labels()["handler"] == "predict" and rules[-1].expr.describe() == "p90 latency of predict over 10m"


def test_an_slo_adds_three_burn_rate_rules_per_objective():
    slo = SloSpec.model_validate({"availability": 0.999, "latency": {"threshold_ms": 250, "objective": 0.99}})
    names = {r.name for r in rules_for("d", [], slo) if r.origin == "slo"}
    assert names == set(BURN_RULE_NAMES)


def test_a_stored_spec_validates_again_by_field_names():
    """A revision stores model_dump() (for_s, window_s, period_s) and reads it back."""
    spec = Deployment.model_validate({"alerts": [{"name": "X", "expr": "restarts", "threshold": 1, "window": "1h",
                                                  "for": "1m"}],
                                      "slo": {"availability": 0.99, "period": "7d"}})
    assert Deployment.model_validate(spec.model_dump()) == spec
    assert Deployment.model_validate_json(spec.model_dump_json()) == spec


def test_effective_specs_leave_the_disabled_out():
    specs = effective_specs([AlertRuleSpec(name="SteadyRestarting", enabled=False)])
    assert "SteadyRestarting" not in [s.name for s in specs] and len(specs) == len(BUILTIN_RULES) - 1


@pytest.mark.parametrize("settings, says", [
    ({"webhooks": [{"url": "ftp://x/hook"}]}, "must be an http:// or https:// URL"),
    ({"webhooks": [{"url": "http:///hook"}]}, "with a host"),
    ({"alertmanager_url": "localhost:9093"}, "must be an http:// or https:// URL"),
    ({"backoff_initial_s": 10, "backoff_max_s": 1}, "backoff_max_s (1) must be >= backoff_initial_s (10)"),
    ({"webhooks": [{"url": "http://x/hook", "token": "s3cret"}]}, "Extra inputs are not permitted"),
])
def test_bad_notification_settings_are_refused(settings, says):
    with pytest.raises(ValidationError, match=None) as caught:
        NotificationSettings.model_validate(settings)
    assert says in str(caught.value)


def test_notifications_are_off_until_a_target_is_named():
    assert not NotificationSettings().enabled
    assert NotificationSettings.model_validate({"alertmanager_url": "http://127.0.0.1:9093"}).enabled
