"""``steady dashboard``: a one-time login link to the web dashboard."""

from __future__ import annotations

from pathlib import Path

import click

from .cli import (
    API_URL_OPTION,
    CACERT_OPTION,
    STATE_DIR_OPTION,
    _api,
    _open_db,
    _remote,
    err_console,
    fail,
    main,
)


@main.command()
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def dashboard(api_url: str | None, cacert: Path | None, state_dir: Path) -> None:
    """Print a login link to the dashboard: it works once, within 2 minutes, and the browser
    keeps the session (12 hours). Minted through the local control socket, or with $STEADY_TOKEN
    over --api-url; the link holds a one-time code, never a token."""
    remote = _remote(api_url)
    minted = _api("POST", "/v1/ui/logins", state_dir, remote, cacert=cacert, context="dashboard login")
    base = remote
    if base is None:
        db = _open_db(state_dir)
        try:
            base = db.meta().get("api_url")
        finally:
            db.close()
    if not base:
        fail(f"the instance in {state_dir} recorded no control API address; pass --api-url")
    click.echo(f"{base.rstrip('/')}/ui?token={minted['code']}")
    err_console.print("[dim]open it within 2 minutes; it logs one browser in[/dim]")
