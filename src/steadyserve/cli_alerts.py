"""``steady alerts``, ``steady slo`` and ``steady export prometheus-rules``.

Registered on the main group by ``register(main)``; ``export`` is a group of its own, for
more exports to come (``steady export grafana``, ...).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click
from rich.markup import escape
from rich.table import Table

from .alerting.durations import format_duration
from .alerting.export import DeploymentAlerting
from .alerting.slospec import SloSpec
from .cli import (
    API_URL_OPTION,
    CACERT_OPTION,
    STATE_DIR_OPTION,
    _api,
    _open_db,
    _remote,
    console,
    err_console,
    fail,
    main,
)
from .errors import ConfigError
from .metrics.history import History
from .printable import for_terminal

SPEC_FILE_HELP = "Deployment spec."


# --- where the data comes from --------------------------------------------------------------
def load_history(state_dir: Path) -> History:
    """The metrics history as the files hold it (the per-minute tier the controller writes)."""
    from .metrics.store import OBSERVABILITY_DB, SqliteHistoryStore

    path = state_dir / OBSERVABILITY_DB
    if not path.exists():
        fail(f"no metrics history at {path}: is this the state directory of an instance that has run"
             " (steady serve / steady up --state-dir ...)?")
    return History(store=SqliteHistoryStore.open_existing(path))


def deployment_alerting(spec: Any) -> DeploymentAlerting:
    """A ``DeploymentSpec``'s ``alerts`` and ``slo`` (none before the spec has those fields)."""
    slo = getattr(spec, "slo", None)
    return DeploymentAlerting(tuple(getattr(spec, "alerts", None) or ()), slo if isinstance(slo, SloSpec) else None)


def slos_from_spec(spec_file: Path) -> dict[str, SloSpec]:
    from .control.spec import load_spec

    try:
        spec = load_spec(spec_file)
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits
    found = {name: deployment_alerting(dep).slo for name, dep in spec.deployments.items()}
    return {name: slo for name, slo in found.items() if slo is not None}


def slos_from_state(state_dir: Path) -> dict[str, SloSpec]:
    """The SLOs of the revisions the instance runs, as its state database records them."""
    from .alerting.views import slo_of_spec_json

    db = _open_db(state_dir)
    try:
        found: dict[str, SloSpec] = {}
        for row in db.desired_deployments():
            name, revision = row["name"], row["revision"]
            recorded = db.revision_config(name, revision)
            spec = json.loads(recorded).get("spec", {}) if recorded else json.loads(
                db.revision_spec(name, revision) or "{}").get("spec", {})
            slo = slo_of_spec_json(spec)
            if slo is not None:
                found[name] = slo
        return found
    finally:
        db.close()


# --- formatting ------------------------------------------------------------------------------
def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    return f"{format_duration(max(0.0, round(now - ts)))} ago"


def _percent(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value * 100:.{digits}g}%"


def _burn(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"


_STATE_STYLE = {"firing": "red", "pending": "yellow", "resolved": "green"}


def print_alerts(view: Mapping[str, Any], now: float) -> None:
    rows = [*view["active"], *(r for r in view["recent"] if r["state"] == "resolved")]
    if not rows:
        console.print("no alerts: none active, none resolved recently")
        return
    table = Table()
    for column in ("state", "alert", "deployment", "severity", "since", "value"):
        table.add_column(column, no_wrap=True)
    table.add_column("summary", overflow="fold", min_width=30)
    for r in rows:
        state = r["state"]
        since = {"pending": r.get("active_since"), "firing": r.get("fired_at")}.get(state, r.get("resolved_at"))
        table.add_row(f"[{_STATE_STYLE.get(state, 'white')}]{state}[/]", for_terminal(r["alertname"]),
                      for_terminal(r["deployment"]), for_terminal(r["severity"]), _ago(since, now),
                      for_terminal(r["value_text"] or "-"), for_terminal(r["summary"]))
    console.print(table)


def print_slos(rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no deployment has an slo (set `slo:` of a deployment in the spec)")
        return
    table = Table()
    for column in ("deployment", "sli", "objective", "period", "sli now", "budget used", "budget left",
                   "burn fast", "burn medium", "burn slow", "data since"):
        table.add_column(column, no_wrap=True, justify="left" if column in ("deployment", "sli") else "right")
    now = time.time()
    for r in rows:
        sli = r["sli"] if r["sli"] != "latency" else f"latency < {r['threshold_ms']:g} ms"
        left = r["budget_remaining"]
        style = "red" if left is not None and left <= 0 else "yellow" if left is not None and left < 0.25 else "green"
        burns = {b["speed"]: b for b in r["burn_rates"]}

        def shown(speed: str, burns: dict[str, Any] = burns) -> str:
            b = burns[speed]
            text = f"{_burn(b['long_burn'])}/{_burn(b['short_burn'])}"
            return f"[red]{text}[/]" if b["burning"] else text

        table.add_row(for_terminal(r["deployment"]), sli, _percent(r["objective"], 5),
                      format_duration(r["period_s"]), _percent(r["sli_value"], 5), _percent(r["budget_consumed"]),
                      f"[{style}]{_percent(left)}[/]" if left is not None else "-",
                      shown("Fast"), shown("Medium"), shown("Slow"),
                      _ago(r["data_since"], now))
    console.print(table)
    console.print("[dim]burn: long/short window, 1x spends the budget in exactly the period;"
                  " red: burning past the alert's rate on both[/dim]")


# --- commands --------------------------------------------------------------------------------
@click.command("alerts")
@click.option("--deployment", "-d", help="Only this deployment's alerts.")
@click.option("--limit", "-n", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Recent alerts shown at most.")
@click.option("--json", "as_json", is_flag=True, help="Print {active: [...], recent: [...]} as JSON.")
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def alerts_command(deployment: str | None, limit: int, as_json: bool, api_url: str | None, cacert: Path | None,
                   state_dir: Path) -> None:
    """Active alerts (pending, firing) and those resolved recently."""
    from .alerting.store import OBSERVABILITY_DB, AlertStore
    from .alerting.views import alerts_view

    remote = _remote(api_url)
    if remote:
        query = urlencode({"limit": limit, **({"deployment": deployment} if deployment else {})})
        view = _api("GET", f"/v1/alerts?{query}", state_dir, remote, cacert=cacert)
    else:
        store = AlertStore.open_existing(state_dir / OBSERVABILITY_DB)
        if store is None:
            view = alerts_view([], [])
        else:
            try:
                view = alerts_view(store.active(deployment), store.recent(limit, deployment))
            finally:
                store.close()
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        print_alerts(view, time.time())


@click.command("slo")
@click.argument("deployment", required=False)
@click.option("--file", "-f", "spec_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the SLOs from this spec (default: those of the revisions that run).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def slo_command(deployment: str | None, spec_file: Path | None, as_json: bool, api_url: str | None,
                cacert: Path | None, state_dir: Path) -> None:
    """Each SLO: the SLI over its period, the error budget used and left, the burn rates."""
    from .alerting.views import slo_view

    remote = _remote(api_url)
    if remote and spec_file is None:
        query = f"?{urlencode({'deployment': deployment})}" if deployment else ""
        rows = _api("GET", f"/v1/slo{query}", state_dir, remote, cacert=cacert)
    else:
        slos = slos_from_spec(spec_file) if spec_file is not None else slos_from_state(state_dir)
        if deployment is not None:
            if deployment not in slos:
                fail(f"deployment {deployment!r} has no slo; with one: {', '.join(sorted(slos)) or 'none'}")
            slos = {deployment: slos[deployment]}
        rows = slo_view(load_history(state_dir), slos, time.time()) if slos else []
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        print_slos(rows)


@click.group("export")
def export_group() -> None:
    """Write configuration for other tools, made from the spec."""


def _recorded_specs(state_dir: Path) -> dict[str, Any]:
    """The specs of the deployments an instance runs (or ran), as its state DB records them."""
    from .control.config import DeploymentConfig

    db = _open_db(state_dir)
    try:
        found = {}
        for row in db.desired_deployments():
            recorded = db.revision_config(row["name"], row["revision"])
            if recorded is not None and not row["deleting"]:
                found[row["name"]] = DeploymentConfig.model_validate_json(recorded).spec
        return found
    finally:
        db.close()


@export_group.command("prometheus-rules")
@click.option("--file", "-f", "spec_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Deployment spec (default: steady.yaml; without one, the deployments of --state-dir).")
@click.option("--state-dir", type=click.Path(path_type=Path, file_okay=False),
              help="The deployments an instance runs, as recorded there (e.g. under `steady serve`).")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the rule file here (default: standard output).")
@click.option("--tests", "tests_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write promtool unit tests of the rules here (needs -o): `promtool test rules FILE`.")
def prometheus_rules_command(spec_file: Path | None, state_dir: Path | None, output: Path | None,
                             tests_file: Path | None) -> None:
    """The alert rules (built-ins, the spec's, SLO burn rates) as a Prometheus rule file."""
    from .alerting.export import prometheus_rules, to_yaml
    from .alerting.export_tests import promtool_tests
    from .control.spec import load_spec

    if tests_file is not None and output is None:
        fail("--tests needs -o FILE: the tests name the rule file they test")
    if spec_file is not None and state_dir is not None:
        fail("give -f SPEC or --state-dir DIR, not both")
    if spec_file is None and state_dir is None:
        if not Path("steady.yaml").exists() and Path(".steady", "state.db").exists():
            state_dir = Path(".steady")
        else:
            spec_file = Path("steady.yaml")
    if state_dir is not None:
        specs = _recorded_specs(state_dir)
    else:
        assert spec_file is not None
        try:
            specs = dict(load_spec(spec_file).deployments)
        except ConfigError as exc:
            fail(f"{exc} (or name a running instance with --state-dir, e.g. the one `steady serve` runs)")
            return
    deployments = {name: deployment_alerting(dep) for name, dep in specs.items()}
    text = prometheus_rules(deployments)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {escape(str(output))}; check it with: promtool check rules {escape(str(output))}",
                      soft_wrap=True)
    if tests_file is not None:
        rule_file = os.path.relpath(output.resolve(), tests_file.resolve().parent)
        tests_file.write_text(to_yaml(promtool_tests(deployments, rule_file)), encoding="utf-8")
        err_console.print(f"wrote {escape(str(tests_file))}; run them with: promtool test rules"
                          f" {escape(str(tests_file))}", soft_wrap=True)


def register(main: click.Group) -> None:
    from . import cli_export

    main.add_command(alerts_command)
    main.add_command(slo_command)
    main.add_command(export_group)
    cli_export.register(export_group)


@export_group.command("grafana")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the dashboard JSON here (default: standard output).")
def export_grafana(output: Path | None) -> None:
    """A Grafana dashboard (JSON, for Grafana's import) on the metrics of the gateway's /metrics."""
    import json

    from .grafana import dashboard

    text = json.dumps(dashboard(), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {escape(str(output))}; import it in Grafana (Dashboards > New > Import)",
                          soft_wrap=True)


register(main)  # `steady alerts`, `steady slo`, `steady export ...` (cli.py imports this module last)
