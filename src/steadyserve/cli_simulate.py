"""``steady simulate``: replay a call-rate trace through the autoscaler, reactive against predictive.

    steady simulate --trace examples/traces/periodic.csv --season-s 3600
    steady simulate --trace calls.csv --config steady.yaml --deployment digits --plot sim.html
    steady simulate --trace examples/traces/step.csv --policy reactive --json

The settings come from the flags, else the config's deployment (its ``autoscaling:`` block and
``replicas: {min, max}``), else the defaults; docs/simulate.md has the table and the model.
Bad input (trace, config, option values) is one line on stderr and exit status 2; Ctrl-C is 130.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.markup import escape
from rich.table import Table

from .cli import console, err_console, main
from .errors import ConfigError

if TYPE_CHECKING:
    from .autoscaling.settings import AutoscalingSettings
    from .autoscaling.simulate import Model, Result
    from .control.spec import PlatformSpec

DEFAULT_REPLICA_RPS = 10.0
DEFAULT_STARTUP_S = 30.0
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MAX_REPLICAS = 64
DEFAULT_SEASON_S = 86400.0
DEFAULT_TARGET_UTILIZATION = 0.7
PROGRESS_FROM_S = 10_000  # traces spanning this much (simulated) time show a progress bar
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _refuse(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    sys.exit(EXIT_BAD_INPUT)


class _OneLineErrors(click.Command):
    """Bad option values as one line, like every other refusal of this command (no usage block)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _refuse(exc.format_message())


class _Number(click.FloatRange):
    """A float within the range, and finite: FloatRange lets 'nan' through."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


@dataclass(frozen=True)
class Scenario:
    """What one simulation run needs besides the trace, resolved once from flags, config and defaults."""

    settings: AutoscalingSettings  # the deployment's, flags applied (before simulation_settings)
    model: Model
    target_utilization: float
    origin: str  # where the settings came from, for the caption
    notes: tuple[str, ...] = ()


# --- resolving the settings -----------------------------------------------------------------------
def _deployment(spec: PlatformSpec, config: Path, name: str | None) -> str:
    names = sorted(spec.deployments)
    if name is None:
        if len(names) == 1:
            return names[0]
        scaled = [n for n in names if spec.deployments[n].autoscaled]
        hint = f"; autoscaled: {', '.join(scaled)}" if scaled else ""
        raise ConfigError(f"{config} declares {len(names)} deployments ({', '.join(names)}): pick one with"
                          f" --deployment NAME{hint}")
    if name not in spec.deployments:
        raise ConfigError(f"--deployment {name}: {config} has no such deployment (it declares {', '.join(names)})")
    return name


def resolve(config: Path | None, spec: PlatformSpec | None, deployment: str | None, policies: Sequence[str],
            flags: dict[str, Any]) -> Scenario:
    """The flags win over the config's deployment, which wins over the defaults. ``flags`` holds the
    command's options (None when not given)."""
    from .autoscaling.settings import AutoscalingSettings
    from .autoscaling.simulate import Model

    notes: list[str] = []
    base, origin, where = AutoscalingSettings(), "the defaults", "defaults"
    bounds: tuple[int | None, int | None] = (None, None)
    season_at = ""  # file:line of the config's season_s
    if spec is not None and config is not None:
        from .control.spec import key_location

        name = _deployment(spec, config, deployment)
        dep = spec.deployments[name]
        base = dep.scaling
        origin = where = f"{config} deployments.{name}"
        if dep.autoscaled:
            bounds = dep.replica_bounds
        else:
            notes.append(f"{key_location(config, ('deployments', name, 'replicas'))}: deployments.{name} runs a"
                         f" fixed replicas: {dep.replicas}; simulating the range"
                         f" {flags['min_replicas'] or DEFAULT_MIN_REPLICAS}..{flags['max_replicas'] or DEFAULT_MAX_REPLICAS}")
        if dep.autoscaling is None:
            origin += " (no autoscaling: block: its defaults)"
        season_at = key_location(config, ("deployments", name, "autoscaling", "predictive", "season_s"))
    elif deployment is not None:
        raise ConfigError("--deployment picks a deployment of --config FILE; give the config too")

    min_replicas = _first(flags["min_replicas"], bounds[0], DEFAULT_MIN_REPLICAS)
    max_replicas = _first(flags["max_replicas"], bounds[1], DEFAULT_MAX_REPLICAS)
    if min_replicas > max_replicas:
        low = "--min-replicas" if flags["min_replicas"] is not None else f"replicas.min of {where}"
        high = "--max-replicas" if flags["max_replicas"] is not None else (
            f"replicas.max of {where}" if bounds[1] is not None else "the default maximum")
        raise ConfigError(f"{low} ({min_replicas}) is above {high} ({max_replicas})")

    season: float | str = base.predictive.season_s
    if flags["season_s"] is not None:
        season = float(flags["season_s"])
    elif spec is None:
        season = DEFAULT_SEASON_S
    elif season == "auto" and "predictive" in policies:
        raise ConfigError(f"{season_at}: {where.split()[-1]}.autoscaling.predictive.season_s is auto, which only a"
                          " running controller finds; give --season-s SECONDS")
    data = base.model_dump()
    data["predictive"]["season_s"] = season
    if flags["decision_s"] is not None:
        data["decision_s"] = float(flags["decision_s"])
    try:
        settings = AutoscalingSettings.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"{where}: the flags make invalid autoscaling settings: {exc}") from None

    model = Model(replica_rps=_first(flags["replica_rps"], None, DEFAULT_REPLICA_RPS),
                  startup_s=_first(flags["startup_s"], None, DEFAULT_STARTUP_S),
                  min_replicas=min_replicas, max_replicas=max_replicas)
    utilization = _first(flags["target_utilization"], None, DEFAULT_TARGET_UTILIZATION)
    if settings.metric == "rps" and flags["target_utilization"] is not None:
        notes.append(f"--target-utilization is not used: {where} scales on rps with a target of"
                     f" {settings.target_value:g} calls/s per replica")
    return Scenario(settings, model, utilization, origin, tuple(notes))


def _first(flag: Any, configured: Any, default: Any) -> Any:
    return flag if flag is not None else configured if configured is not None else default


# --- running ------------------------------------------------------------------------------------------
def run_policies(trace: Sequence[tuple[float, float]], scenario: Scenario, policies: Sequence[str],
                 show_progress: bool) -> list[Result]:
    from .autoscaling.simulate import simulate, simulation_settings

    def one(policy: str, progress: Callable[[float], None] | None) -> Result:
        settings = simulation_settings(scenario.settings, scenario.model, policy, scenario.target_utilization)
        return simulate(trace, settings, scenario.model, policy, progress)

    if not show_progress:
        return [one(policy, None) for policy in policies]
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    results = []
    with Progress(TextColumn("{task.description:>10}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        for policy in policies:
            task = bar.add_task(policy, total=1.0)

            def advance(fraction: float, task: Any = task) -> None:
                bar.update(task, completed=fraction)

            results.append(one(policy, advance))
            bar.update(task, completed=1.0)
    return results


# --- comparing ------------------------------------------------------------------------------------------
def change_percent(before: float, after: float) -> float | None:
    """after against before, in %; None when before is 0."""
    return None if before <= 0 else 100.0 * (after - before) / before


def comparison(results: Sequence[Result]) -> dict[str, float | None]:
    """Predictive against reactive: the cut in requests over capacity and the extra replica-seconds, in %."""
    by_policy = {r.policy: r for r in results}
    reactive, predictive = by_policy.get("reactive"), by_policy.get("predictive")
    if reactive is None or predictive is None:
        return {}
    over = change_percent(reactive.over_capacity_requests, predictive.over_capacity_requests)
    return {"over_capacity_cut_percent": _rounded(None if over is None else -over),
            "replica_seconds_extra_percent": _rounded(change_percent(reactive.replica_seconds,
                                                                     predictive.replica_seconds))}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1) + 0.0  # + 0.0: no "-0.0"


def as_json(results: Sequence[Result]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {r.policy: dict(r.report()) for r in results}
    if "predictive" in out:
        out["predictive"].update(comparison(results))
    return out


def rows(results: Sequence[Result]) -> list[tuple[str, list[str]]]:
    """The comparison table: a label and one text per result (the terminal's and the HTML page's)."""
    reports = [r.report() for r in results]
    extra = comparison(results).get("replica_seconds_extra_percent")

    def cost(result: Result) -> str:
        text = f"{result.replica_seconds:,.0f}"
        if result.policy == "predictive" and extra is not None:
            text += f" ({extra:+.1f} % vs reactive)"
        return text

    return [
        ("requests over capacity", [f"{r.over_capacity_requests:,.0f} ({rep['over_capacity_percent']:.2f} %)"
                                    for r, rep in zip(results, reports, strict=True)]),
        ("seconds over capacity", [f"{r.over_capacity_s:,.0f} s" for r in results]),
        ("replica-seconds (cost)", [cost(r) for r in results]),
        ("mean replicas", [f"{rep['mean_replicas']}" for rep in reports]),
        ("scale events", [str(r.scale_events) for r in results]),
        ("peak replicas", [str(r.peak_replicas) for r in results]),
        ("forecast trusted", [f"{rep['forecast_trusted_percent']:.1f} % of the time" if r.policy == "predictive"
                              else "-" for r, rep in zip(results, reports, strict=True)]),
    ]


def summary(results: Sequence[Result]) -> str | None:
    """One line on what predictive bought and cost against reactive; None unless both ran."""
    by_policy = {r.policy: r for r in results}
    if "reactive" not in by_policy or "predictive" not in by_policy:
        return None
    before, after = by_policy["reactive"].over_capacity_requests, by_policy["predictive"].over_capacity_requests
    figures = comparison(results)
    extra = figures["replica_seconds_extra_percent"]
    cost = "at the same replica-seconds" if not extra else f"at {extra:+.1f} % replica-seconds"
    cut = figures["over_capacity_cut_percent"]
    if cut is None:
        if after <= 0:
            return f"neither policy left requests over capacity; predictive {cost}"
        return f"predictive left {after:,.0f} requests over capacity where reactive left none, {cost}"
    verb = "cut" if cut >= 0 else "raised"
    untrusted = "; the forecast was never trusted" if by_policy["predictive"].predictive_s <= 0 else ""
    return (f"predictive {verb} requests over capacity by {abs(cut):.1f} % ({before:,.0f} -> {after:,.0f})"
            f" {cost}{untrusted}")


def _duration(seconds: float) -> str:
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def describe(trace_path: Path, trace: Sequence[tuple[float, float]], scenario: Scenario) -> tuple[str, str]:
    """The table's title (the trace) and caption (the model and the settings)."""
    rates = [rate for _, rate in trace[:-1]]  # the last row marks the end
    span = trace[-1][0] - trace[0][0]
    # Each rate holds until the next row: the mean weighs it by how long.
    calls = sum(rate * (trace[i + 1][0] - ts) for i, (ts, rate) in enumerate(trace[:-1]))
    title = (f"{trace_path.name}: {_duration(span)}, mean {calls / span:.1f} calls/s,"
             f" peak {max(rates):g} calls/s")
    s, m = scenario.settings, scenario.model
    if s.metric == "rps":
        target = f"target {s.target_value:g} calls/s per replica"
    else:
        target = (f"target {scenario.target_utilization:g} x {m.replica_rps:g} ="
                  f" {scenario.target_utilization * m.replica_rps:g} calls/s per replica")
    season = s.predictive.season_s
    caption = (f"a replica serves {m.replica_rps:g} calls/s and is ready {m.startup_s:g} s after it starts;"
               f" {m.min_replicas}..{m.max_replicas} replicas; {target}; a decision every {s.decision_s:g} s;"
               f" season {season if isinstance(season, str) else f'{season:g} s'}; settings: {scenario.origin}")
    return title, caption


# --- the command --------------------------------------------------------------------------------------------
def _check_plot(plot: Path | None) -> None:
    from .autoscaling.plot import png_available

    if plot is None:
        return
    if plot.suffix.lower() == ".png" and not png_available():
        raise ConfigError(f"--plot {plot}: a PNG needs matplotlib, which is not installed: write an .html"
                          " file instead, or pip install matplotlib")
    if not plot.parent.is_dir():
        raise ConfigError(f"--plot {plot}: no directory {plot.parent}")
    if plot.is_dir():
        raise ConfigError(f"--plot {plot}: is a directory")


def _write_plot(plot: Path, results: Sequence[Result], title: str) -> None:
    from .autoscaling.plot import render_html, render_png

    try:
        if plot.suffix.lower() == ".png":
            plot.write_bytes(render_png(results, title))
        else:
            plot.write_text(render_html(results, title, rows(results)), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{plot}: cannot write the plot: {exc.strerror}") from exc


@main.command(cls=_OneLineErrors)
@click.option("--trace", "trace_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="CSV with the header time,rate (seconds, calls/s); a rate holds until the next row.")
@click.option("--policy", type=click.Choice(["reactive", "predictive", "both"]), default="both", show_default=True,
              help="both: reactive and predictive on the same trace, compared.")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="A steady.yaml: its deployment's autoscaling: block and replicas: {min, max}; flags override.")
@click.option("--deployment", help="The config's deployment to simulate (needed when it declares several).")
@click.option("--replica-rps", type=_Number(min=0, max=1e6, min_open=True),
              help="Calls/s one ready replica serves. Default: 10.")
@click.option("--startup-s", type=_Number(min=0, max=86400),
              help="Seconds from a replica's start to ready (it costs from its start). Default: 30.")
@click.option("--decision-s", type=_Number(min=0, max=600, min_open=True),
              help="A scaling decision this often. Default: the config's decision_s, else 5.")
@click.option("--min-replicas", type=click.IntRange(0, 64),
              help="Fewest replicas (0: scale to zero). Default: the config's replicas.min, else 1.")
@click.option("--max-replicas", type=click.IntRange(1, 64),
              help="Most replicas. Default: the config's replicas.max, else 64.")
@click.option("--season-s", type=_Number(min=10, max=30 * 86400),
              help="The load's period, for the forecast (3600 for examples/traces/periodic.csv). Default: the"
                   " config's predictive.season_s, else 86400 (a day).")
@click.option("--target-utilization", type=_Number(min=0, max=1, min_open=True),
              help="Unless the config's metric is rps: the target is this x --replica-rps calls/s per replica."
                   " Default: 0.7.")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False),
              help="Write load, capacity and replicas over time: FILE.html (self-contained SVG) or FILE.png"
                   " (needs matplotlib).")
@click.option("--json", "print_json", is_flag=True,
              help="Print one JSON object keyed by policy, nothing else on stdout.")
def simulate(trace_path: Path, policy: str, config_path: Path | None, deployment: str | None, plot: Path | None,
             print_json: bool, **flags: Any) -> None:
    """Replay a call-rate trace through the autoscaler: requests over capacity, replica-seconds,
    scale events, reactive against predictive (docs/simulate.md)."""
    try:
        _simulate(trace_path, policy, config_path, deployment, plot, print_json, flags)
    except ConfigError as exc:
        _refuse(str(exc))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)


def _simulate(trace_path: Path, policy: str, config_path: Path | None, deployment: str | None, plot: Path | None,
              print_json: bool, flags: dict[str, Any]) -> None:
    from .autoscaling.simulate import read_trace

    policies = ["reactive", "predictive"] if policy == "both" else [policy]
    spec = None
    if config_path is not None:
        from .control.spec import load_spec

        spec = load_spec(config_path)
    scenario = resolve(config_path, spec, deployment, policies, flags)
    _check_plot(plot)
    if trace_path.exists() and not trace_path.is_file():  # a FIFO or a device would hang or never end
        raise ConfigError(f"{trace_path}: cannot read the trace: not a regular file")
    trace = read_trace(trace_path)
    season = scenario.settings.predictive
    span = trace[-1][0] - trace[0][0]
    if span < scenario.model.step_s:
        raise ConfigError(f"{trace_path}: the trace spans {span:g} s; the simulator steps"
                          f" {scenario.model.step_s:g} s at a time, and the last row marks the end")
    notes = list(scenario.notes)
    if "predictive" in policies and isinstance(season.season_s, float) and span <= season.min_seasons * season.season_s:
        notes.append(f"the trace spans {span:g} s, not more than the {season.min_seasons:g} season(s) of"
                     f" {season.season_s:g} s the forecast learns from first: predictive acts as reactive"
                     " (--season-s sets the season)")
    for note in notes:
        err_console.print(f"note: {escape(note)}", soft_wrap=True)
    show_progress = not print_json and err_console.is_terminal and span >= PROGRESS_FROM_S
    results = run_policies(trace, scenario, policies, show_progress)
    title, caption = describe(trace_path, trace, scenario)
    if plot is not None:
        _write_plot(plot, results, title)
    if print_json:
        click.echo(json.dumps(as_json(results), indent=2))
        return
    table = Table(title=escape(title), caption=escape(caption), caption_justify="left")
    table.add_column("")
    for result in results:
        table.add_column(result.policy, justify="right")
    for label, values in rows(results):
        table.add_row(label, *values)
    console.print(table)
    line = summary(results)
    if line is not None:
        console.print(escape(line))
    if plot is not None:
        console.print(f"wrote {escape(str(plot))}")
