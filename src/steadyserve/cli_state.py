"""`steady backup` and `steady restore`: snapshots of the state database (see control/backup.py)."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

import click
from rich.markup import escape

from .cli import STATE_DIR_OPTION, _open_db, console, err_console, fail, main


@main.command("backup")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@STATE_DIR_OPTION
def backup_command(file: Path | None, state_dir: Path) -> None:
    """Write a consistent snapshot of the state DB to FILE, also while serving.

    Default FILE: <state-dir>/snapshots/backup-<UTC time>.db (kept by the rotation).
    The file is created 0600: it holds token hashes, the audit log and deployment secrets.
    """
    from .control.backup import MANUAL_PREFIX, backup, describe_counts, remove_stale_partials, snapshot_name
    from .control.integrity import SNAPSHOT_DIR

    db = _open_db(state_dir)  # checks it: a damaged database is not copied
    db_path = db.path
    db.close()
    dest = file if file is not None else state_dir / SNAPSHOT_DIR / snapshot_name(MANUAL_PREFIX, dt.datetime.now(dt.UTC))
    if dest.exists():
        fail(f"{dest} exists; name a new file")
    _say_removed(remove_stale_partials(dest.parent, {dest.name}))
    found = backup(db_path, dest)
    console.print(f"backed up {escape(str(db_path))} to {escape(str(dest))}: {describe_counts(found)}")
    err_console.print(f"{escape(str(dest))} is readable by you only (0600): it holds token hashes, the audit log"
                      " and deployment secrets", soft_wrap=True)


def _say_removed(paths: list[Path]) -> None:
    for path in paths:
        err_console.print(f"removed {escape(str(path))}: an unfinished copy left by an interrupted backup or"
                          " restore", soft_wrap=True)


def _running_controller(state_dir: Path) -> int | None:
    """The pid of a controller serving from ``state_dir``: as its database says, else as `ps` shows."""
    from .control.leftovers import running_from
    from .control.serve import live_controller_pid
    from .control.statedb import StateDB
    from .errors import StateError

    try:
        db = StateDB.open_existing(state_dir)
    except (StateError, FileNotFoundError):
        meta: dict[str, str] = {}
    else:
        try:
            meta = db.meta()
        finally:
            db.close()
    pid = live_controller_pid(meta, state_dir)
    if pid is not None:
        return pid
    return next((p.pid for p in running_from(state_dir) if p.kind == "controller"), None)


@main.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Restore while a controller runs here (it goes on with the replaced file until restarted).")
@STATE_DIR_OPTION
def restore_command(file: Path, force: bool, state_dir: Path) -> None:
    """Replace the state DB with snapshot FILE (checked first); the replaced file is kept aside."""
    from .control.backup import describe_counts, remove_stale_partials, restore, verify
    from .control.leftovers import running_from
    from .control.statedb import DB_NAME

    db_path = state_dir / DB_NAME
    if db_path.exists() and file.resolve() == db_path.resolve():
        fail(f"{file} is the state DB itself; name a snapshot")
    verify(file)  # StateError: one line naming the problem
    pid = _running_controller(state_dir)
    if pid is not None and not force:
        fail(f"a steady controller (pid {pid}) is running with state dir {state_dir}; stop it first"
             " (or pass --force: it goes on with the replaced file until restarted)")
    _say_removed(remove_stale_partials(state_dir, {DB_NAME}))
    result = restore(file, db_path)
    console.print(f"restored {escape(str(file))} into {escape(str(db_path))}: {describe_counts(result.counts)}")
    if result.replaced is not None:
        console.print(f"the replaced database is kept as {escape(str(result.replaced))}")
    if pid is not None:
        console.print(f"[yellow]controller pid {pid} still uses the replaced database; restart it[/]")
    others = [p for p in running_from(state_dir) if p.kind != "controller"]
    if others:
        console.print("still running from this state dir: " + ", ".join(p.describe() for p in others)
                      + f"; `steady up --state-dir {escape(shlex.quote(str(state_dir)))}` adopts those the snapshot knows")
