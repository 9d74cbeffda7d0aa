"""`steady` commands that manage a running platform: deploy, scale, rollback, delete,
revisions (through the control API), tokens and the audit log (on the state DB)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .cli import (
    API_URL_OPTION,
    STATE_DIR_OPTION,
    _api,
    _open_db,
    console,
    err_console,
    fail,
    main,
    status_rows,
)
from .errors import ConfigError


# --- commands that go through the control API -------------------------------------------
@main.command()
@click.option("--file", "-f", "spec_file", type=click.Path(path_type=Path), default=Path("steady.yaml"),
              show_default=True)
@API_URL_OPTION
@STATE_DIR_OPTION
def deploy(spec_file: Path, api_url: str | None, state_dir: Path) -> None:
    """Create or update (rolling update) every deployment of a spec file."""
    from .control.spec import load_spec

    try:
        spec = load_spec(spec_file)
    except ConfigError as exc:
        fail(str(exc))
    base = spec_file.resolve().parent
    table = Table()
    for column in ("deployment", "revision", "result"):
        table.add_column(column)
    for name, dep in spec.deployments.items():
        path, sep, cls = dep.service.partition(":")
        service = str(Path(path) if Path(path).is_absolute() else base / path) + sep + cls
        body = {"spec": dep.model_copy(update={"service": service}).model_dump(mode="json")}
        result = _api("PUT", f"/v1/deployments/{name}", state_dir, api_url, body)
        table.add_row(name, str(result["revision"]), "rolling out" if result["changed"] else "unchanged")
    console.print(table)


@main.command()
@click.argument("name")
@click.argument("replicas", type=click.IntRange(1, 64))
@API_URL_OPTION
@STATE_DIR_OPTION
def scale(name: str, replicas: int, api_url: str | None, state_dir: Path) -> None:
    """Set the number of replicas of deployment NAME."""
    result = _api("POST", f"/v1/deployments/{name}/scale", state_dir, api_url, {"replicas": replicas})
    console.print(f"{name}: scaling to {result['replicas']} replicas ({result['ready']} ready now)")


@main.command()
@click.argument("name")
@click.option("--to", "to_revision", type=click.IntRange(1), help="Revision (default: the one before).")
@API_URL_OPTION
@STATE_DIR_OPTION
def rollback(name: str, to_revision: int | None, api_url: str | None, state_dir: Path) -> None:
    """Roll deployment NAME back to an earlier revision (as a new revision)."""
    result = _api("POST", f"/v1/deployments/{name}/rollback", state_dir, api_url, {"to_revision": to_revision})
    console.print(f"{name}: rolling out revision {result['revision']}")


@main.command()
@click.argument("name")
@API_URL_OPTION
@STATE_DIR_OPTION
def delete(name: str, api_url: str | None, state_dir: Path) -> None:
    """Delete deployment NAME (its replicas drain first)."""
    _api("DELETE", f"/v1/deployments/{name}", state_dir, api_url)
    console.print(f"{name}: deleting")


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@API_URL_OPTION
@STATE_DIR_OPTION
def revisions(name: str, as_json: bool, api_url: str | None, state_dir: Path) -> None:
    """Revisions of deployment NAME."""
    rows = _api("GET", f"/v1/deployments/{name}/revisions", state_dir, api_url)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for column in ("revision", "active", "created", "service"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["revision"]), "*" if r["active"] else "",
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created_at"])), r["target"])
    console.print(table)


@main.group()
def token() -> None:
    """API tokens: create, list, revoke (works on the state dir directly)."""


def _state_db(state_dir: Path) -> Any:
    from .control.statedb import DB_NAME, StateDB

    state_dir.mkdir(parents=True, exist_ok=True)
    return StateDB(state_dir / DB_NAME)


@token.command("create")
@click.option("--role", type=click.Choice(["admin", "deployer", "viewer", "invoker"]), required=True)
@click.option("--name", required=True, help="Who or what holds it; shown in the audit log.")
@click.option("--rate", "rate_per_s", type=click.FloatRange(min=0.001), help="Gateway calls per second.")
@click.option("--burst", type=click.IntRange(min=1), help="Calls allowed at once above the rate.")
@STATE_DIR_OPTION
def token_create(role: str, name: str, rate_per_s: float | None, burst: int | None, state_dir: Path) -> None:
    """Create a token and print it once (only its hash is kept)."""
    from .auth import new_token

    value, token_id, digest = new_token()
    db = _state_db(state_dir)
    try:
        db.add_token(token_id, name, role, digest, rate_per_s,
                     burst if burst is not None else (max(1, int(rate_per_s)) if rate_per_s else None))
        db.add_audit(_local_actor(), "token create", f"token {name} ({role})", "local", "ok")
    except ValueError as exc:
        fail(str(exc))
    finally:
        db.close()
    err_console.print(f"token {name!r} ({role}) created; it is shown once, store it now:")
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
    if running and not _wait_gateways_without(name, state_dir, timeout_s):
        fail(f"token {name!r} is revoked in the state DB, but not every gateway confirmed within {timeout_s:g}s")
    console.print(f"token {name!r} revoked")


def _local_actor() -> str:
    import getpass

    try:
        return f"local:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "local"


def _wait_gateways_without(name: str, state_dir: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            table = json.loads((state_dir / "routes.json").read_text())
            if all(t["name"] != name for t in table.get("tokens", {}).values()):
                rows = status_rows(state_dir)
                if all((r["routes_version"] or 0) >= table["version"] for r in rows if r["kind"] == "gateway"):
                    return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    return False


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
        table.add_row(t["name"], t["role"], str(t["rate_per_s"] or "-"),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(t["created_at"])),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(t["revoked_at"])) if t["revoked_at"] else "")
    console.print(table)


@main.command()
@click.option("--limit", "-n", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@STATE_DIR_OPTION
def audit(limit: int, as_json: bool, state_dir: Path) -> None:
    """Who changed what, and every refused call."""
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
    for r in rows:
        table.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"])), r["actor"], r["action"],
                      escape(r["target"]), r["source"], escape(r["result"]))
    console.print(table)
