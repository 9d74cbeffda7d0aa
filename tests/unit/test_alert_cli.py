"""`steady alerts`, `steady slo` and `steady export prometheus-rules`, through click."""

from __future__ import annotations

import json

import click
import pytest
import yaml
from alert_helpers import calls, steady_history
from click.testing import CliRunner

from steadyserve.alerting.evaluate import AlertState, Phase
from steadyserve.alerting.slospec import SloSpec
from steadyserve.alerting.store import OBSERVABILITY_DB, AlertStore
from steadyserve.alerting.views import slo_view
from steadyserve.cli_alerts import print_slos, register

SPEC = """
deployments:
  digits:
    service: examples/digits
  echo:
    service: examples/echo
"""


@pytest.fixture
def cli():
    group = click.Group()
    register(group)
    runner = CliRunner()
    return lambda *args: runner.invoke(group, list(args), catch_exceptions=False)


def test_the_commands_are_registered():
    group = click.Group()
    register(group)
    assert set(group.commands) == {"alerts", "slo", "export"}
    assert set(group.commands["export"].commands) == {"prometheus-rules", "grafana", "kubernetes"}  # type: ignore[attr-defined]


def test_alerts_without_any_store_says_there_are_none(cli, tmp_path):
    result = cli("alerts", "--state-dir", str(tmp_path))
    assert result.exit_code == 0 and "no alerts" in result.output


def test_alerts_lists_active_and_resolved(cli, tmp_path):
    def alert(name, phase, resolved_at=None):
        return AlertState(f"digits/{name}", phase, (("alertname", name), ("deployment", "digits"),
                                                    ("severity", "critical")),
                          (("summary", f"digits: {name}"), ("value", "12.5%")), 0.125, 100.0, 50.0, 60.0, resolved_at)

    store = AlertStore(tmp_path / OBSERVABILITY_DB)
    old = alert("Old", Phase.FIRING)
    store.save({old.key: old}, [old], 60.0)
    store.save({}, [alert("Old", Phase.RESOLVED, 90.0)], 90.0)
    now = alert("Now", Phase.FIRING)
    store.save({now.key: now}, [now], 100.0)
    store.close()
    result = cli("alerts", "--state-dir", str(tmp_path), "--json")
    view = json.loads(result.output)
    assert [(a["alertname"], a["state"], a["value_text"]) for a in view["active"]] == [("Now", "firing", "12.5%")]
    assert [(a["alertname"], a["state"]) for a in view["recent"]] == [("Now", "firing"), ("Old", "resolved")]
    table = cli("alerts", "--state-dir", str(tmp_path)).output
    assert "Now" in table and "Old" in table and "resolved" in table and "12.5%" in table


def test_export_writes_the_builtin_rules_to_stdout(cli, tmp_path):
    (tmp_path / "steady.yaml").write_text(SPEC)
    result = cli("export", "prometheus-rules", "-f", str(tmp_path / "steady.yaml"))
    document = yaml.safe_load(result.output)
    assert [g["name"] for g in document["groups"]] == ["steady-digits", "steady-echo"]
    assert [r["alert"] for r in document["groups"][0]["rules"]][:2] == ["SteadyHighErrorRatio", "SteadyHighLatencyP99"]
    assert result.output.startswith("# Prometheus alerting rules of steadyserve")


def test_export_writes_files_and_tests_next_to_them(cli, tmp_path):
    (tmp_path / "steady.yaml").write_text(SPEC)
    (tmp_path / "out").mkdir()
    rules, tests = tmp_path / "out" / "rules.yml", tmp_path / "out" / "tests.yml"
    result = cli("export", "prometheus-rules", "-f", str(tmp_path / "steady.yaml"), "-o", str(rules),
                 "--tests", str(tests))
    assert result.exit_code == 0 and result.stdout == ""
    assert f"check it with: promtool check rules {rules}" in result.stderr
    assert yaml.safe_load(tests.read_text())["rule_files"] == ["rules.yml"]
    assert yaml.safe_load(rules.read_text())["groups"]


@pytest.mark.parametrize("args, says", [
    (["--tests", "t.yml"], "--tests needs -o FILE"),
    (["-f", "missing.yaml"], "cannot read the spec: no such file"),
])
def test_export_refusals(args, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    group = click.Group()
    register(group)
    result = CliRunner().invoke(group, ["export", "prometheus-rules", *args])
    assert result.exit_code == 1 and says in result.output


def test_export_includes_the_spec_rules_and_slo(cli, tmp_path):
    (tmp_path / "steady.yaml").write_text(SPEC.replace("service: examples/digits", """service: examples/digits
    alerts:
      - {name: SteadyHighMemory, enabled: false}
      - {name: Busy, expr: inflight, threshold: 50, for: 1m}
    slo: {availability: 0.999}"""))
    document = yaml.safe_load(cli("export", "prometheus-rules", "-f", str(tmp_path / "steady.yaml")).output)
    names = [r.get("alert") or r.get("record") for r in document["groups"][0]["rules"]]
    assert "Busy" in names and "SteadyHighMemory" not in names and "SteadyAvailabilityBudgetBurnFast" in names
    assert "steady:slo_availability_bad:ratio_rate1h" in names


def test_slo_view_and_table_show_budget_and_burn():
    slo = SloSpec.model_validate({"availability": 0.99, "period": "1h"})
    history = steady_history(60.0, 60, calls("digits", ok_per_step=99.5, bad_per_step=0.5))
    (row,) = slo_view(history, {"digits": slo}, 3600.0)
    assert row["budget_consumed"] == pytest.approx(0.5) and row["budget_remaining"] == pytest.approx(0.5)
    assert [b["speed"] for b in row["burn_rates"]] == ["Fast", "Medium", "Slow"]
    assert row["burn_rates"][0]["long_burn"] == pytest.approx(0.5)
    runner = CliRunner()

    @click.command()
    def show() -> None:
        print_slos([row])

    output = runner.invoke(show).output
    assert "digits" in output and "50%" in output and "0.5x/0.5x" in output


def test_slo_reads_the_running_revisions_and_the_stored_history(cli, tmp_path):
    """Offline: the SLOs of the revisions in the state DB, over the history's per-minute tier."""
    import time

    from steadyserve.control.statedb import StateDB
    from steadyserve.metrics.store import SqliteHistoryStore

    db = StateDB(tmp_path / "state.db")
    config = {"name": "digits", "spec": {"service": "/x.py:S", "slo": {"availability": 0.99, "period": "1h"}}}
    revision, _ = db.record_revision("digits", json.dumps({"spec": config["spec"]}), json.dumps(config))
    db.save_deployments([{"name": "digits", "revision": revision, "replicas": 1, "previous_revision": None,
                          "deleting": 0, "next_index": 0, "spec_replicas": 1}])
    db.close()
    store = SqliteHistoryStore(tmp_path / OBSERVABILITY_DB)
    now = time.time()
    ok, bad = (("steady_requests_total", (("code", code), ("deployment", "digits"), ("handler", "predict"),
                                           ("revision", "1"))) for code in ("200", "500"))
    for minute in range(61):
        store.write(now - 3600 + minute * 60, {ok: 995.0 * minute, bad: 5.0 * minute})
    result = cli("slo", "--state-dir", str(tmp_path), "--json")
    (row,) = json.loads(result.output)
    assert (row["deployment"], row["sli"], row["objective"]) == ("digits", "availability", 0.99)
    assert row["budget_consumed"] == pytest.approx(0.5, rel=0.05)
    assert "digits" in cli("slo", "--state-dir", str(tmp_path)).output
    missing = CliRunner().invoke(_group(), ["slo", "echo", "--state-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "deployment 'echo' has no slo; with one: digits" in missing.output


def _group() -> click.Group:
    group = click.Group()
    register(group)
    return group
