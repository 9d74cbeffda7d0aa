"""`steady` commands that manage a running platform: deploy, scale, rollback, delete,
revisions (through the control API), tokens and the audit log (on the state DB)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .cli import (
    API_URL_OPTION,
    CACERT_OPTION,
    STATE_DIR_OPTION,
    _api,
    _open_db,
    console,
    err_console,
    fail,
    main,
)
from .errors import ConfigError
from .printable import for_terminal
from .wording import plural


# --- commands that go through the control API -------------------------------------------
@main.command()
@click.option("--file", "-f", "spec_file", type=click.Path(path_type=Path), default=Path("steady.yaml"),
              show_default=True)
@click.option("--wait", is_flag=True, help="Return when every rollout has finished; exit 1 if one was"
              " rolled back or did not finish (a CI gate).")
@click.option("--timeout-s", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="With --wait: give up after this long.")
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def deploy(spec_file: Path, wait: bool, timeout_s: float, api_url: str | None, cacert: Path | None,
           state_dir: Path) -> None:
    """Create or update (rolling update) every deployment of a spec file.

    An unchanged spec changes nothing; one that changes only the replica count scales.
    """
    import os

    from .control.secrets import read_secret_values
    from .control.spec import key_location, load_spec

    try:
        spec = load_spec(spec_file)
        base = spec_file.resolve().parent
        secrets = {name: read_secret_values(name, dep, base, os.environ, str(spec_file))
                   for name, dep in spec.deployments.items()}
    except ConfigError as exc:
        fail(str(exc))
    since = _last_event_seq(state_dir, api_url, cacert) if wait else 0
    table = Table()
    for column in ("deployment", "revision", "replicas", "result"):
        table.add_column(column)
    rolling: dict[str, int] = {}
    for name, dep in spec.deployments.items():
        path, sep, cls = dep.service.partition(":")
        service = str(Path(path) if Path(path).is_absolute() else base / path) + sep + cls
        body = {"spec": dep.model_copy(update={"service": service}).model_dump(mode="json"),
                "secrets": secrets[name]}
        try:
            result = _api("PUT", f"/v1/deployments/{name}", state_dir, api_url, body, cacert=cacert,
                          context=f"{key_location(spec_file, ('deployments', name))}: deployments.{name}")
        except SystemExit:  # refused: deployments are applied one by one, in the file's order
            if rolling:
                err_console.print(f"applied before the refusal (kept): {', '.join(rolling)}; not applied:"
                                  f" {', '.join(n for n in spec.deployments if n not in rolling)}")
                console.print(table)
            raise
        settings = result.get("settings_changed") or []
        outcome = ("created" if result["created"] else "rolling out" if result["rolling_out"]
                   else "scaled" if result["changed"] and not settings
                   else f"updated {', '.join(settings)} (no rollout)" if settings else "unchanged")
        table.add_row(name, str(result["revision"]), str(result["replicas"]), outcome)
        rolling[name] = result["revision"]
    console.print(table)
    if wait and not _wait_for_rollouts(rolling, since, timeout_s, state_dir, api_url, cacert):
        sys.exit(1)


def _last_event_seq(state_dir: Path, api_url: str | None, cacert: Path | None) -> int:
    events = _api("GET", "/v1/events?limit=1", state_dir, api_url, cacert=cacert)
    return int(events[-1]["seq"]) if events else 0


def _wait_for_rollouts(revisions: dict[str, int], since: int, timeout_s: float, state_dir: Path,
                       api_url: str | None, cacert: Path | None) -> bool:
    """Poll until each deployment's rollout is done or failed; print why any failed."""
    from .deploy_wait import Done, Failed, Verdict, Waiting, judge

    deadline = time.monotonic() + timeout_s
    verdicts: dict[str, Verdict] = {}
    with console.status("waiting for the rollouts") as status:
        while True:
            deployments = {d["name"]: d for d in _api("GET", "/v1/deployments", state_dir, api_url, cacert=cacert)}
            events = [e for e in _api("GET", "/v1/events?limit=10000", state_dir, api_url, cacert=cacert)
                      if e["seq"] > since]
            verdicts = {name: judge(name, rev, deployments.get(name), events) for name, rev in revisions.items()}
            waiting = {n: v for n, v in verdicts.items() if isinstance(v, Waiting)}
            if not waiting or time.monotonic() > deadline:
                break
            status.update("waiting: " + "; ".join(f"{n}: {v.progress}" for n, v in waiting.items()))
            time.sleep(0.5)
    ok = True
    for name, verdict in verdicts.items():
        if isinstance(verdict, Done):
            console.print(f"{name}: rolled out ({verdict.message})")
        elif isinstance(verdict, Failed):
            ok = False
            err_console.print(f"[red]{escape(name)}: rollout failed:[/red] {escape(verdict.reason)}")
        else:
            ok = False
            err_console.print(f"[red]{escape(name)}: not rolled out within {timeout_s:g}s:[/red]"
                              f" {escape(verdict.progress)}")
    return ok


@main.command()
@click.argument("name")
@click.argument("replicas", type=click.IntRange(1, 64))
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def scale(name: str, replicas: int, api_url: str | None, cacert: Path | None, state_dir: Path) -> None:
    """Set the number of replicas of deployment NAME."""
    result = _api("POST", f"/v1/deployments/{name}/scale", state_dir, api_url, {"replicas": replicas},
                  cacert=cacert)
    console.print(f"{name}: scaling to {plural(result['replicas'], 'replica')} ({result['ready']} ready now)")


@main.command()
@click.argument("name")
@click.option("--to", "to_revision", type=click.IntRange(1), help="Revision (default: the one before).")
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def rollback(name: str, to_revision: int | None, api_url: str | None, cacert: Path | None,
             state_dir: Path) -> None:
    """Roll deployment NAME back to an earlier revision (as a new revision)."""
    result = _api("POST", f"/v1/deployments/{name}/rollback", state_dir, api_url, {"to_revision": to_revision},
                  cacert=cacert)
    console.print(f"{name}: rolling out revision {result['revision']}")


@main.command()
@click.argument("name")
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def delete(name: str, api_url: str | None, cacert: Path | None, state_dir: Path) -> None:
    """Delete deployment NAME (its replicas drain first)."""
    _api("DELETE", f"/v1/deployments/{name}", state_dir, api_url, cacert=cacert)
    console.print(f"{name}: deleting")


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def revisions(name: str, as_json: bool, api_url: str | None, cacert: Path | None, state_dir: Path) -> None:
    """Revisions of deployment NAME."""
    rows = _api("GET", f"/v1/deployments/{name}/revisions", state_dir, api_url, cacert=cacert)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for column in ("revision", "active", "created", "service"):
        table.add_column(column)
    table.add_column("changes", overflow="fold")
    for r in rows:
        table.add_row(str(r["revision"]), "*" if r["active"] else "",
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created_at"])), for_terminal(r["target"]),
                      for_terminal("\n".join(r.get("changes", []))))
    console.print(table)


@main.group()
def token() -> None:
    """API tokens: create, list, revoke (works on the state dir directly)."""


def _state_db(state_dir: Path) -> Any:
    """The state DB, in a state dir that is ours and private (tokens are written to it)."""
    from .control.private_dirs import ensure_private_dir
    from .control.statedb import DB_NAME, StateDB

    try:
        ensure_private_dir(state_dir)
    except ConfigError as exc:
        fail(str(exc))
    return StateDB(state_dir / DB_NAME)


TOKEN_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}"


@token.command("create")
@click.option("--role", type=click.Choice(["admin", "deployer", "viewer", "invoker"]), required=True)
@click.option("--name", required=True, help="Who or what holds it; shown in the audit log.")
@click.option("--rate", "rate_per_s", type=click.FloatRange(min=0.001), help="Gateway calls per second.")
@click.option("--burst", type=click.IntRange(min=1), help="Calls allowed at once above the rate.")
@click.option("--timeout-s", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Wait at most this long for every running gateway to accept the token.")
@STATE_DIR_OPTION
def token_create(role: str, name: str, rate_per_s: float | None, burst: int | None, timeout_s: float,
                 state_dir: Path) -> None:
    """Create a token and print it once (only its hash is kept), once every running gateway accepts it."""
    import re

    from .auth import new_token

    if not re.fullmatch(TOKEN_NAME_PATTERN, name):
        fail(f"token name {name!r} must be 1-64 letters, digits and . _ @ + - (it is shown in tables and the"
             " audit log)")
    value, token_id, digest = new_token()
    db = _state_db(state_dir)
    try:
        db.add_token(token_id, name, role, digest, rate_per_s,
                     burst if burst is not None else (max(1, int(rate_per_s)) if rate_per_s else None))
        db.add_audit(_local_actor(), "token create", f"token {name} ({role})", "local", "ok")
        meta = db.meta()
    except ValueError as exc:
        fail(str(exc))
    finally:
        db.close()
    # The gateways learn tokens from the routing table the controller republishes: a token used
    # before they serve that table is refused (401).
    late = None
    if meta.get("status") == "running" and not _controller_alive(meta):
        late = "no controller is running here: the gateways learn it when `steady up` runs again"
    elif meta.get("status") == "running" and not _wait_gateways(
            state_dir, timeout_s, lambda tokens: token_id in tokens):
        late = f"not every gateway confirmed it within {timeout_s:g}s: calls with it may get 401 for a while"
    err_console.print(f"token {for_terminal(repr(name))} ({role}) created; it is shown once, store it now:")
    if late is not None:  # the token exists either way: it must still be shown
        err_console.print(f"[yellow]warning:[/yellow] {escape(late)}")
    click.echo(value)


@token.command("revoke")
@click.argument("name")
@click.option("--timeout-s", type=float, default=10.0, show_default=True)
@STATE_DIR_OPTION
def token_revoke(name: str, timeout_s: float, state_dir: Path) -> None:
    """Revoke a token; returns once every running gateway refuses it."""
    db = _state_db(state_dir)
    try:
        if not db.revoke_token(name):
            fail(f"no active token named {name!r}")
        db.add_audit(_local_actor(), "token revoke", f"token {name}", "local", "ok")
        running = db.meta().get("status") == "running"
    finally:
        db.close()
    if running and not _wait_gateways(state_dir, timeout_s,
                                      lambda tokens: all(t["name"] != name for t in tokens.values())):
        fail(f"token {name!r} is revoked in the state DB, but not every gateway confirmed within {timeout_s:g}s")
    console.print(f"token {for_terminal(repr(name))} revoked")


def _local_actor() -> str:
    import getpass

    try:
        return f"local:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "local"


def _controller_alive(meta: dict[str, str]) -> bool:
    from .control.processes import pid_alive

    pid = int(meta.get("controller_pid", "0") or 0)
    return pid > 0 and pid_alive(pid)


def _wait_gateways(state_dir: Path, timeout_s: float, served: Callable[[dict[str, Any]], bool]) -> bool:
    """Poll until the routing table's tokens (by id) satisfy ``served`` and every gateway serves
    that table or a later one; False if that is not so within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    db = _open_db(state_dir)  # this instance's gateways, whatever $STEADY_API_URL names
    try:
        while True:
            try:
                table = json.loads((state_dir / "routes.json").read_text())
                if served(table.get("tokens", {})) and all(
                        (r["routes_version"] or 0) >= table["version"] for r in db.processes() if r["kind"] == "gateway"):
                    return True
            except (OSError, ValueError, KeyError):  # the table mid-replace: look again
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
    finally:
        db.close()


@token.command("list")
@STATE_DIR_OPTION
def token_list(state_dir: Path) -> None:
    """Tokens by name and role (never their values)."""
    db = _state_db(state_dir)
    try:
        rows = db.tokens(include_revoked=True)
    finally:
        db.close()
    table = Table()
    for column in ("name", "role", "rate/s", "created", "revoked"):
        table.add_column(column)
    for t in rows:
        table.add_row(for_terminal(t["name"]), t["role"], str(t["rate_per_s"] or "-"),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(t["created_at"])),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(t["revoked_at"])) if t["revoked_at"] else "")
    console.print(table)


@main.command()
@click.option("--limit", "-n", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@STATE_DIR_OPTION
def audit(limit: int, as_json: bool, state_dir: Path) -> None:
    """Who changed what, and every refused call (a row with a count stands for that many calls)."""
    from .printable import printable

    db = _open_db(state_dir)
    try:
        rows = db.audit(limit)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for column in ("time", "actor", "action", "target", "from", "result"):
        table.add_column(column, overflow="fold")
    table.add_column("count", justify="right")
    refused: dict[str, int] = {}
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"]))
        if r.get("last_ts") and int(r["last_ts"]) != int(r["ts"]):
            when += time.strftime(" to %H:%M:%S", time.localtime(r["last_ts"]))
        count = int(r.get("count") or 1)
        # Stored text is shown as stored, but a control character never reaches the terminal (callers
        # choose paths, and rows written before targets were sanitised may hold escape sequences).
        table.add_row(when, *(escape(printable(str(r[c]))) for c in ("actor", "action", "target", "source", "result")),
                      str(count))
        if r["action"] == "invoke":
            status = r["result"].partition(":")[0]
            refused[status] = refused.get(status, 0) + count
    console.print(table)
    if refused:
        console.print("refused calls in these rows: "
                      + ", ".join(f"{status}: {n}" for status, n in sorted(refused.items())))
