"""`steady logs`: the collected output of every replica and gateway, read from ``<state-dir>/logs.db``.

    steady logs digits --level warning --since 10m
    steady logs --request-id g0-1a2b-17          # every line of one call, gateway and replica
    steady logs digits --grep "out of memory" -f
    steady logs --patterns                       # the mined templates, most seen first
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from .cli import STATE_DIR_OPTION, console, fail, main
from .logs.records import LEVELS
from .logs.store import LOGS_DB_NAME, MAX_QUERY_LIMIT, LogStore, StoredRecord
from .logs.template_db import load_templates
from .logs.timespec import parse_time
from .printable import for_terminal

POLL_INTERVAL_S = 0.5
_LEVEL_STYLES = {"debug": "dim", "info": "green", "warning": "yellow", "error": "red", "critical": "bold red"}
_LEVEL_NAMES = {number: name for name, number in LEVELS.items()}
_SHORT_ID_CHARS = 18
_wait: Callable[[float], None] = time.sleep  # tests replace it: a follow loop that needs no real time


@main.command("logs")
@click.argument("deployment", required=False)
@click.option("--replica", help="Only this replica (r0) or process (digits-r0, g0).")
@click.option("--level", type=click.Choice(list(LEVELS), case_sensitive=False),
              help="This level and above (raw output counts as info).")
@click.option("--since", help="From this time: 30s, 10m, 2h, 1d (ago), or an ISO time.")
@click.option("--grep", "grep_text", metavar="TEXT", help="Lines holding these words in this order (any case).")
@click.option("--request-id", help="Every line of one call (the x-request-id a client saw).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@click.option("--limit", "-n", type=click.IntRange(1, MAX_QUERY_LIMIT), default=100, show_default=True,
              help="The newest this many lines (or templates).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--patterns", is_flag=True, help="The mined log templates with their counts, not the lines.")
@STATE_DIR_OPTION
def logs_command(deployment: str | None, replica: str | None, level: str | None, since: str | None,
                 grep_text: str | None, request_id: str | None, follow: bool, limit: int, as_json: bool,
                 patterns: bool, state_dir: Path) -> None:
    """Lines the replicas and gateways wrote, oldest first: the newest --limit that match."""
    store = _open(state_dir)
    try:
        if patterns:
            if follow or grep_text or request_id or replica or since:
                fail("--patterns takes DEPLOYMENT, --level, --limit and --json only")
            _print_patterns(store, deployment, level, limit, as_json)
            return
        try:
            since_ts = parse_time(since, time.time()) if since is not None else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
        filters: dict[str, Any] = dict(deployment=deployment, replica=replica, level=level and level.lower(),
                                       since=since_ts, grep=grep_text, request_id=request_id)
        emit = _emit_json if as_json else _emit_line
        start_id = store.last_id()
        shown = store.query(**filters, limit=limit)
        for record in shown:
            emit(record)
        if follow:
            try:
                follow_records(store, filters, max([start_id, *(r.id for r in shown)]), emit)
            except KeyboardInterrupt:
                return  # Ctrl-C is how following ends
    except sqlite3.DatabaseError as exc:
        fail(f"cannot read {store.path}: {exc}")
    finally:
        store.close()


def follow_records(store: LogStore, filters: dict[str, Any], after_id: int, emit: Callable[[StoredRecord], None],
                   wait: Callable[[float], None] | None = None) -> None:
    """Print what arrives after ``after_id``, polling, until ``wait`` raises (Ctrl-C)."""
    while True:
        (wait or _wait)(POLL_INTERVAL_S)
        for record in store.query(**filters, after_id=after_id, limit=MAX_QUERY_LIMIT):
            emit(record)
            after_id = max(after_id, record.id)  # shown in time order, not id order


def _open(state_dir: Path) -> LogStore:
    path = state_dir / LOGS_DB_NAME
    try:
        return LogStore.open_existing(path)
    except (FileNotFoundError, sqlite3.DatabaseError):
        fail(f"no logs collected yet at {path}: is `steady serve` running with this --state-dir?")
        raise  # fail() exits; this line is for the type checker


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short(request_id: str | None) -> str:
    if request_id is None:
        return "-"
    return request_id if len(request_id) <= _SHORT_ID_CHARS else request_id[: _SHORT_ID_CHARS - 1] + "…"


def _emit_line(stored: StoredRecord) -> None:
    r = stored.record
    message = for_terminal(r.message).replace("\n", "\n    ")  # a traceback's lines stay under their record
    style = _LEVEL_STYLES.get(r.level, "white")
    console.print(f"[dim]{_when(r.ts)}[/] [{style}]{r.level.upper():<8}[/] {for_terminal(r.source)}"
                  f" [cyan]{for_terminal(_short(r.request_id))}[/] {message}", soft_wrap=True)


def _emit_json(stored: StoredRecord) -> None:
    click.echo(json.dumps(stored.to_json(), ensure_ascii=True))  # \u escapes: nothing reaches the terminal raw


def _print_patterns(store: LogStore, deployment: str | None, level: str | None, limit: int, as_json: bool) -> None:
    floor = LEVELS[level.lower()] if level is not None else 0
    templates = [t for t in load_templates(store.connection, deployment) if t.level_no >= floor][:limit]
    if as_json:
        for t in templates:
            click.echo(json.dumps({"id": t.id, "deployment": t.deployment or None, "template": t.text,
                                   "count": t.count, "level": _LEVEL_NAMES.get(t.level_no, "info"),
                                   "first_seen": t.first_seen, "last_seen": t.last_seen,
                                   "revisions": {str(k): v for k, v in sorted(t.revisions.items())}},
                                  ensure_ascii=True))
        return
    table = Table()
    for column in ("id", "deployment", "count", "level", "first seen", "last seen", "revisions"):
        table.add_column(column, no_wrap=True)
    table.add_column("template", overflow="fold", min_width=30)
    for t in templates:
        name = _LEVEL_NAMES.get(t.level_no, "info")
        revisions = " ".join(f"{k or '?'}:{v}" for k, v in sorted(t.revisions.items()))  # revision:lines
        table.add_row(str(t.id), for_terminal(t.deployment or "(gateways)"), str(t.count),
                      f"[{_LEVEL_STYLES.get(name, 'white')}]{name}[/]", _when(t.first_seen), _when(t.last_seen),
                      revisions, for_terminal(t.text))
    console.print(table)
