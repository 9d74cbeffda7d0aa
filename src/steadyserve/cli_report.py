"""``steady report``: availability, incidents, MTTR, MTBF and expected downtime per deployment."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click
from rich.table import Table

from .cli import API_URL_OPTION, CACERT_OPTION, STATE_DIR_OPTION, _api, _open_db, _remote, console, fail, main
from .printable import for_terminal


def _when(text: str, now: float, option: str) -> float:
    from .logs.timespec import parse_time

    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _local_controller_running(state_dir: Path) -> bool:
    from .control.serve import live_controller_pid

    if not (state_dir / "state.db").exists():
        return False
    db = _open_db(state_dir)
    try:
        return live_controller_pid(db.meta(), state_dir) is not None
    finally:
        db.close()


def _offline(state_dir: Path, since: float, until: float, deployment: str | None) -> list[dict[str, Any]]:
    """From the files alone (no controller running): the history's per-minute tier and the events."""
    from .control import report_data
    from .metrics.history import History
    from .metrics.store import OBSERVABILITY_DB, SqliteHistoryStore

    path = state_dir / OBSERVABILITY_DB
    if not path.exists():
        fail(f"no metrics history at {path}: is this the state directory of an instance that has run"
             " (steady serve / steady up --state-dir ...)?")
    history = History(store=SqliteHistoryStore.open_existing(path))
    db = _open_db(state_dir)
    try:
        events = db.events_between(since - 60, until)
    finally:
        db.close()
    names = [deployment] if deployment else report_data.deployments_seen(history, since, until)
    return [report_data.to_json(r) for r in report_data.reports(history, events, names, since, until)]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.3f}%"


def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def print_reports(reports: list[dict[str, Any]]) -> None:
    if not reports:
        console.print("no deployment served calls or ran replicas in this period")
        return
    table = Table(title=f"availability {_stamp(reports[0]['since'])} .. {_stamp(reports[0]['until'])}")
    for column in ("deployment", "calls", "failed", "availability", "time ready", "incidents", "downtime",
                   "MTTR", "MTBF", "failures/h", "p(failure in 1h)", "D = p·E per hour"):
        table.add_column(column, justify="left" if column == "deployment" else "right", no_wrap=True)
    for r in reports:
        table.add_row(for_terminal(r["deployment"]), f"{r['calls']:.0f}", f"{r['failed_calls']:.0f}",
                      _percent(r["availability"]), _percent(r["ready_time_fraction"]), str(len(r["incidents"])),
                      _duration(r["downtime_s"]), _duration(r["mttr_s"]), _duration(r["mtbf_s"]),
                      f"{r['failure_rate_per_h']:.3f}", f"{r['failure_probability_per_h']:.3f}",
                      _duration(r["expected_downtime_s_per_h"]))
    console.print(table)
    for r in reports:
        if not r["incidents"]:
            continue
        incidents = Table(title=f"incidents of {for_terminal(r['deployment'])}")
        for column in ("start", "duration", "failed calls", "no capacity"):
            incidents.add_column(column, no_wrap=True)
        incidents.add_column("cause (events)", overflow="fold", min_width=30)
        for i in r["incidents"]:
            incidents.add_row(_stamp(i["start"]), _duration(i["duration_s"]), f"{i['failed_calls']:.0f}",
                              _duration(i["no_capacity_s"]),
                              for_terminal("\n".join(i["causes"])) or "no event recorded")
        console.print(incidents)


@main.command()
@click.argument("deployment", required=False)
@click.option("--since", default="24h", show_default=True, help="Start: 30m, 6h, 7d ago, or an ISO time.")
@click.option("--until", default=None, help="End (default: now): 10m (ago), or an ISO time.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON (with the per-step series).")
@click.option("--html", "html_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write a self-contained page with charts (opens offline).")
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def report(deployment: str | None, since: str, until: str | None, as_json: bool, html_file: Path | None,
           api_url: str | None, cacert: Path | None, state_dir: Path) -> None:
    """Availability report: successful calls, time with a ready replica, incidents and their
    causes, MTTR, MTBF, failure rate and expected downtime, per deployment."""
    now = time.time()
    end = now if until is None else _when(until, now, "--until")
    start = _when(since, now, "--since")
    if start >= end:
        raise click.BadParameter(f"--since ({_stamp(start)}) must be before --until ({_stamp(end)})",
                                 param_hint="--since")
    query = {"since": start, "until": end, **({"deployment": deployment} if deployment else {})}
    if _remote(api_url) or _local_controller_running(state_dir):
        reports = _api("GET", "/v1/report?" + urlencode(query), state_dir, _remote(api_url), cacert=cacert)
    else:
        reports = _offline(state_dir, start, end, deployment)
    if deployment is not None and not any(r["calls"] or r["recorded_s"] for r in reports):
        fail(f"no calls and no replicas of a deployment {deployment!r} were recorded in this period"
             " (`steady status` lists the deployments)")
    if html_file is not None:
        from .report_html import render_page

        html_file.write_text(render_page(reports), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(reports, indent=2))
    else:
        print_reports(reports)
        if html_file is not None:
            console.print(f"wrote {html_file}")
