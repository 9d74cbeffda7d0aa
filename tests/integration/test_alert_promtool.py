"""The exported rule file against Prometheus's own tools: `promtool check rules` accepts it and
`promtool test rules` runs the generated unit tests, which fail when a rule is wrong."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from steadyserve.alerting.export import DeploymentAlerting, prometheus_rules, to_yaml
from steadyserve.alerting.export_tests import promtool_tests
from steadyserve.alerting.rulespec import AlertRuleSpec
from steadyserve.alerting.slospec import SloSpec

pytestmark = [
    pytest.mark.integration,
]

CUSTOM = [AlertRuleSpec.model_validate(rule) for rule in (
    {"name": "SteadyHighErrorRatio", "threshold": 0.01, "for": "1m"},
    {"name": "SteadyHighShedRatio", "enabled": False},
    {"name": "Busy", "expr": "inflight", "threshold": 20, "for": "1m", "labels": {"team": "ml"}},
    {"name": "Fat", "expr": "memory_bytes", "threshold": 2e9, "severity": "info"},
    {"name": "SlowPredict", "expr": "latency_quantile", "quantile": 0.95, "threshold": 0.3, "handler": "predict",
     "op": ">="},
    {"name": "TooQuiet", "expr": "error_ratio", "threshold": 0.2, "op": "<", "window": "2m"},
    {"name": "Flapping", "expr": "restarts", "threshold": 0, "window": "30m", "op": ">"},
    {"name": "NewLogErrors", "expr": "log_findings", "threshold": 0, "window": "10m"},
)]


def deployments(scale: float) -> dict[str, DeploymentAlerting]:
    slo = SloSpec.model_validate({"availability": 0.999, "latency": {"threshold_ms": 250, "objective": 0.99},
                                  "window_scale": scale})
    return {"digits": DeploymentAlerting(CUSTOM, slo), "echo": DeploymentAlerting()}


def write(tmp_path: Path, scale: float) -> tuple[Path, Path]:
    rules, tests = tmp_path / "rules.yml", tmp_path / "tests.yml"
    rules.write_text(prometheus_rules(deployments(scale)))
    tests.write_text(to_yaml(promtool_tests(deployments(scale), "rules.yml")))
    return rules, tests


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, timeout=240)


def test_promtool_accepts_the_rule_file(tmp_path):
    rules, _ = write(tmp_path, 1.0)
    checked = promtool("check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # 10 recording (2 SLIs x 5 windows); digits: 5 built-ins (one off), 6 own, 6 burn-rate; echo: 6 built-ins.
    assert "SUCCESS: 33 rules found" in checked.stdout


@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_every_rule_fires_when_it_should_and_not_otherwise(tmp_path, scale):
    _, tests = write(tmp_path, scale)
    names = re.findall(r"- name: (.*)", tests.read_text())
    assert len([n for n in names if n.endswith(" fires")]) == 23  # one per alerting rule
    ran = promtool("test", "rules", tests)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert "SUCCESS" in ran.stdout


def test_the_tests_catch_a_wrong_rule(tmp_path):
    rules, tests = write(tmp_path, 1.0)
    # Every final threshold comparison turned around: the cases must now fail.
    text = rules.read_text()
    rules.write_text(re.sub(r"(expr: .*) > ([0-9.e+-]+)$", r"\1 < \2", text, flags=re.MULTILINE))
    ran = promtool("test", "rules", tests)
    assert ran.returncode != 0
    failed = set(re.findall(r"name: (\S+ (?:fires|stays quiet)),", ran.stdout + ran.stderr))
    names = set(re.findall(r"- name: (.*)", tests.read_text()))
    # TooQuiet and SlowPredict compare with < and >=: left alone. A burn-rate rule's quiet case stays
    # quiet: its short window's own "> rate" gate is not at the end of the line, so not turned.
    turned = {n for n in names if n.endswith(" fires") or (n.endswith(" stays quiet") and "BudgetBurn" not in n)}
    assert {n for n in turned if "TooQuiet" not in n and "SlowPredict" not in n} <= failed
