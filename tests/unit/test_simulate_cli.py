"""`steady simulate`: replays a trace through the autoscaler; --json, --plot, --config, and its refusals."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from steadyserve.cli import main

ROOT = Path(__file__).resolve().parents[2]
STEP_TRACE = ROOT / "examples" / "traces" / "step.csv"
REPORT_KEYS = {"over_capacity_requests", "over_capacity_s", "replica_seconds", "scale_events"}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["simulate", *args])
    return result.exit_code, result.stdout, result.stderr


def write_trace(tmp_path: Path, rows: Sequence[tuple[float, float]], name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text("time,rate\n" + "".join(f"{t:g},{r:g}\n" for t, r in rows), encoding="utf-8")
    return path


def step_rows(duration_s: int = 900, low: float = 20.0, high: float = 80.0) -> list[tuple[float, float]]:
    """``low``, ``high`` for the middle third, ``low`` again."""
    return [(t, high if duration_s / 3 <= t < 2 * duration_s / 3 else low) for t in range(duration_s + 1)]


def simulated(*args: str) -> dict[str, Any]:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "steady.yaml"
    path.write_text(text, encoding="utf-8")
    return path


TWO_DEPLOYMENTS = """\
deployments:
  digits:
    service: examples/digits
    replicas: {min: 2, max: 3}
    autoscaling:
      metric: rps
      target: 8
  echo:
    service: examples/echo
    replicas: 2
"""


# --- output ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("policy", "keys"), [("reactive", {"reactive"}), ("predictive", {"predictive"}),
                                               ("both", {"reactive", "predictive"})])
def test_json_is_one_object_with_one_report_per_policy(tmp_path: Path, policy: str, keys: set[str]):
    report = simulated("--trace", str(write_trace(tmp_path, step_rows())), "--policy", policy)
    assert set(report) == keys
    for figures in report.values():
        assert REPORT_KEYS <= set(figures)


def test_both_compares_predictive_with_reactive_in_json(tmp_path: Path):
    report = simulated("--trace", str(write_trace(tmp_path, step_rows())))
    assert "over_capacity_cut_percent" in report["predictive"]
    assert "replica_seconds_extra_percent" in report["predictive"]


def test_the_table_has_a_column_per_policy_and_a_summary_line(tmp_path: Path):
    code, out, _ = run("--trace", str(write_trace(tmp_path, step_rows())))
    assert code == 0
    for text in ("reactive", "predictive", "requests over capacity", "seconds over capacity", "replica-seconds",
                 "scale events", "peak replicas", "forecast trusted"):
        assert text in out
    assert "predictive cut requests over capacity by" in out


def test_a_step_up_leaves_calls_over_capacity_until_new_replicas_are_ready(tmp_path: Path):
    report = simulated("--trace", str(write_trace(tmp_path, step_rows())), "--policy", "reactive",
                       "--startup-s", "30")
    assert report["reactive"]["over_capacity_requests"] > 0
    assert report["reactive"]["scale_events"] >= 2  # up for the step, down after it


# --- predictive against reactive ----------------------------------------------------------------------
def test_predictive_never_leaves_more_calls_over_capacity_on_the_shipped_step_trace():
    report = simulated("--trace", str(STEP_TRACE))
    reactive, predictive = report["reactive"], report["predictive"]
    assert predictive["over_capacity_requests"] <= 1.01 * reactive["over_capacity_requests"]


def test_predictive_never_leaves_more_calls_over_capacity_on_a_spike(tmp_path: Path):
    rows = [(t, 200.0 if 300 <= t < 360 else 20.0) for t in range(901)]
    report = simulated("--trace", str(write_trace(tmp_path, rows)))
    reactive, predictive = report["reactive"], report["predictive"]
    assert reactive["over_capacity_requests"] > 0
    assert predictive["over_capacity_requests"] <= 1.01 * reactive["over_capacity_requests"]


@pytest.mark.parametrize("shape", ["step", "spike"])
def test_with_a_trusted_forecast_predictive_still_leaves_no_more_over_capacity(tmp_path: Path, shape: str):
    season_s = 1440  # 10 s buckets: few model fits, so the test stays short
    if shape == "step":
        rows = [(t, 80.0 if t % season_s >= season_s / 2 else 20.0) for t in range(2 * season_s + 721)]
    else:
        rows = [(t, 200.0 if 700 <= t % season_s < 760 else 20.0) for t in range(2 * season_s + 721)]
    report = simulated("--trace", str(write_trace(tmp_path, rows)), "--season-s", str(season_s))
    reactive, predictive = report["reactive"], report["predictive"]
    assert predictive["forecast_trusted_percent"] > 0
    assert predictive["over_capacity_requests"] <= 1.01 * reactive["over_capacity_requests"]


# --- traces that are refused --------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "line"), [
    ("0,1\n1,2\n", 1),  # no header
    ("when,rate\n0,1\n1,2\n", 1),
    ("time,rate\n0,1\n1,lots\n", 3),
    ("time,rate\n0,1\n5,2\n5,3\n", 4),  # time not increasing
    ("time,rate\n0,1\n5,2\n3,3\n", 4),
    ("time,rate\n0,1\n1,-2\n", 3),  # negative rate
    ("", 1),  # empty
])
def test_a_bad_trace_is_one_line_naming_file_and_line(tmp_path: Path, text: str, line: int):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    code, out, err = run("--trace", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {path}:{line}: ")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("time,rate\n", "at least two rows"),
    ("time,rate\n0,1\n0.5,2\n", "spans 0.5 s"),
])
def test_a_trace_too_short_to_simulate_is_refused(tmp_path: Path, text: str, expected: str):
    path = tmp_path / "short.csv"
    path.write_text(text, encoding="utf-8")
    code, _, err = run("--trace", str(path))
    assert code == 2
    assert f"{path}: " in err and expected in err


def test_a_missing_trace_names_the_file(tmp_path: Path):
    code, _, err = run("--trace", str(tmp_path / "nope.csv"))
    assert code == 2
    assert f"{tmp_path / 'nope.csv'}: cannot read the trace" in err


# --- options that are refused ------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "named"), [
    (["--replica-rps", "0"], "--replica-rps"),
    (["--replica-rps", "nan"], "--replica-rps"),
    (["--startup-s", "-1"], "--startup-s"),
    (["--decision-s", "0"], "--decision-s"),
    (["--target-utilization", "1.5"], "--target-utilization"),
    (["--season-s", "5"], "--season-s"),
    (["--max-replicas", "0"], "--max-replicas"),
    (["--min-replicas", "9", "--max-replicas", "4"], "--min-replicas"),
    (["--policy", "psychic"], "--policy"),
    (["--deployment", "digits"], "--deployment"),
])
def test_a_bad_option_value_is_one_line_naming_the_option(tmp_path: Path, args: list[str], named: str):
    code, out, err = run("--trace", str(write_trace(tmp_path, step_rows())), *args)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and named in err
    assert len(err.strip().splitlines()) == 1


def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from steadyserve.autoscaling import simulate as engine

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "simulate", interrupted)
    code, _, err = run("--trace", str(write_trace(tmp_path, step_rows())), "--policy", "reactive")
    assert code == 130
    assert err.strip() == "interrupted"


# --- plots ------------------------------------------------------------------------------------------------
def test_plot_writes_a_self_contained_page_with_a_chart_per_policy(tmp_path: Path):
    page = tmp_path / "sim.html"
    code, out, err = run("--trace", str(write_trace(tmp_path, step_rows())), "--plot", str(page))
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") == 2
    assert "<script" not in text and "src=" not in text and "href=" not in text
    assert f"wrote {page}" in out


def test_plot_with_json_keeps_stdout_to_the_json_object(tmp_path: Path):
    page = tmp_path / "sim.html"
    code, out, _ = run("--trace", str(write_trace(tmp_path, step_rows())), "--plot", str(page), "--json")
    assert code == 0
    assert set(json.loads(out)) == {"reactive", "predictive"}
    assert "<svg" in page.read_text(encoding="utf-8")


def test_a_png_plot_without_matplotlib_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from steadyserve.autoscaling import plot

    monkeypatch.setattr(plot, "png_available", lambda: False)
    code, _, err = run("--trace", str(write_trace(tmp_path, step_rows())), "--plot", str(tmp_path / "sim.png"))
    assert code == 2
    assert "--plot" in err and ".html" in err and "pip install matplotlib" in err
    assert not (tmp_path / "sim.png").exists()


# --- a config file ---------------------------------------------------------------------------------------
def test_a_config_with_several_deployments_needs_deployment(tmp_path: Path):
    config = write_config(tmp_path, TWO_DEPLOYMENTS)
    code, _, err = run("--trace", str(write_trace(tmp_path, step_rows())), "--config", str(config))
    assert code == 2
    assert "--deployment" in err and "digits" in err and "echo" in err


def test_an_unknown_deployment_is_refused_with_the_names_there_are(tmp_path: Path):
    config = write_config(tmp_path, TWO_DEPLOYMENTS)
    code, _, err = run("--trace", str(write_trace(tmp_path, step_rows())), "--config", str(config),
                       "--deployment", "nope")
    assert code == 2
    assert "--deployment nope" in err and "digits, echo" in err


def test_the_config_deployment_bounds_the_replicas_and_flags_override_them(tmp_path: Path):
    trace = str(write_trace(tmp_path, step_rows(high=200.0)))
    config = str(write_config(tmp_path, TWO_DEPLOYMENTS))
    from_config = simulated("--trace", trace, "--config", config, "--deployment", "digits", "--policy", "reactive")
    assert from_config["reactive"]["peak_replicas"] == 3
    overridden = simulated("--trace", trace, "--config", config, "--deployment", "digits", "--policy", "reactive",
                           "--max-replicas", "5")
    assert overridden["reactive"]["peak_replicas"] == 5


def test_a_config_rps_target_is_used_as_it_is(tmp_path: Path):
    config = write_config(tmp_path, "deployments:\n  digits:\n    service: x\n    replicas: {min: 1, max: 64}\n"
                                    "    autoscaling: {metric: rps, target: 5}\n")
    flat = [(t, 50.0) for t in range(601)]
    report = simulated("--trace", str(write_trace(tmp_path, flat)), "--config", str(config), "--policy", "reactive")
    assert report["reactive"]["peak_replicas"] == 10  # 50 calls/s / 5 per replica


def test_a_bad_config_is_refused_naming_file_and_line(tmp_path: Path):
    config = write_config(tmp_path, "deployments:\n  digits:\n    service: x\n    replicas: {min: 1, max: 4}\n"
                                    "    autoscaling:\n      metrc: rps\n")
    code, out, err = run("--trace", str(write_trace(tmp_path, step_rows())), "--config", str(config))
    assert code == 2
    assert out == ""
    assert f"{config}:6: deployments.digits.autoscaling.metrc: unknown key" in err


def test_a_config_season_of_auto_needs_season_s_for_predictive(tmp_path: Path):
    config = write_config(tmp_path, "deployments:\n  digits:\n    service: x\n    replicas: {min: 1, max: 4}\n"
                                    "    autoscaling:\n      predictive: {enabled: true, season_s: auto}\n")
    trace = str(write_trace(tmp_path, step_rows()))
    code, _, err = run("--trace", trace, "--config", str(config))
    assert code == 2
    assert f"{config}:6:" in err and "--season-s" in err
    assert set(simulated("--trace", trace, "--config", str(config), "--season-s", "600")) == {"reactive",
                                                                                             "predictive"}


# --- the charts, as pure functions ------------------------------------------------------------------------
def test_the_page_is_the_same_for_the_same_results_and_escapes_text():
    from steadyserve.autoscaling.plot import render_html
    from steadyserve.autoscaling.simulate import Result

    result = Result("reactive", duration_s=30.0, peak_replicas=2,
                    series=[(0.0, 5.0, 10.0, 1), (10.0, 25.0, 10.0, 2), (20.0, 5.0, 20.0, 2)])
    page = render_html([result], "<trace>.csv", [("scale events", ["1 <&>"])])
    assert page == render_html([result], "<trace>.csv", [("scale events", ["1 <&>"])])
    assert "&lt;trace&gt;.csv" in page and "1 &lt;&amp;&gt;" in page and "<trace>" not in page
    # the 10 s at 25 calls/s over a capacity of 10 are shaded, and nothing else
    shaded = re.findall(r'<path d="([^"]*)" fill="#d6453d"', page)
    assert len(shaded) == 1 and shaded[0].count("M") == 1


@pytest.mark.parametrize(("high", "ticks"), [(7.0, [0, 2, 4, 6, 8]), (100.0, [0, 20, 40, 60, 80, 100]),
                                             (0.0, [0, 1])])
def test_axis_ticks_are_round_and_reach_the_highest_value(high: float, ticks: list[float]):
    from steadyserve.autoscaling.plot import nice_ticks

    assert nice_ticks(high, 5) == ticks
