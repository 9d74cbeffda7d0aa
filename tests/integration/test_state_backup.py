"""The state DB: a damaged or emptied one stops every command with one line; `steady backup`
while serving; `steady restore` round trip; rotating snapshots; lost state names its processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import stat
from pathlib import Path

import pytest
from conftest import (
    FIXTURES,
    LoadStream,
    free_port,
    pid_alive,
    run_cli,
    start_instance,
    stop_instance,
    wait_for,
)

pytestmark = pytest.mark.integration

TABLES = ("meta", "deployments", "revisions", "tokens", "audit", "events", "secrets", "sqlite_sequence")


def write_spec(directory: Path, extra: str = "") -> Path:
    spec = directory / "steady.yaml"
    spec.write_text(f"deployments:\n  slow:\n    service: {FIXTURES / 'slow'}\n    replicas: 1\n"
                    f"gateway:\n  processes: 1\n{extra}")
    return spec


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    finally:
        conn.close()


def listing(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def served_state(tmp_path_factory) -> Path:
    """A state dir a real `steady up` ran in (a token, audit rows, events), stopped cleanly."""
    base = tmp_path_factory.mktemp("served")
    state_dir = base / "state"
    created = run_cli("token", "create", "--role", "admin", "--name", "ops", "--state-dir", str(state_dir))
    assert created.returncode == 0, created.stderr
    inst = start_instance(write_spec(base), state_dir, command="up")
    assert stop_instance(inst) == 0
    shutil.rmtree(state_dir / "snapshots")  # the message then has no snapshot to name: the plain case
    return state_dir


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(3 * 4096))


def _zero_length(path: Path) -> None:
    path.write_bytes(b"")


def _cut_mid_page(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(f.seek(0, os.SEEK_END) // 2 + 100)


def _deleted(path: Path) -> None:
    path.unlink()


COMMANDS = {
    "status": lambda sd, spec: ["status", "--state-dir", sd],
    "token list": lambda sd, spec: ["token", "list", "--state-dir", sd],
    "up": lambda sd, spec: ["up", "-f", spec, "--no-auth", "--port", str(free_port()), "--api-port", "0",
                            "--state-dir", sd],
    "serve": lambda sd, spec: ["serve", str(FIXTURES / "slow"), "--port", str(free_port()), "--state-dir", sd],
}


@pytest.mark.parametrize("damage", [_garbage, _zero_length, _cut_mid_page, _deleted])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_damaged_or_emptied_state_db_stops_the_command_with_one_line(served_state, tmp_path, damage, command):
    state_dir = tmp_path / "state"
    shutil.copytree(served_state, state_dir)
    db_path = state_dir / "state.db"
    damage(db_path)
    before = listing(state_dir)
    result = run_cli(*COMMANDS[command](str(state_dir), str(write_spec(tmp_path))))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: state DB {db_path} is "), result.stderr
    assert f"no good snapshot in {state_dir}/snapshots" in lines[0]
    assert listing(state_dir) == before  # nothing recreated, nothing replaced


def test_backup_while_serving_then_restore_brings_back_every_row(tmp_path):
    state_dir = tmp_path / "state"
    created = run_cli("token", "create", "--role", "deployer", "--name", "ci", "--state-dir", str(state_dir))
    assert created.returncode == 0, created.stderr
    inst = start_instance(write_spec(tmp_path), state_dir, command="up")
    try:
        with LoadStream(inst.port, "/slow/work", {"ms": 5}, threads=2) as stream:
            wait_for(lambda: stream.ok > 20, 60, "traffic")
            for i in range(3):
                result = inst.cli("backup", str(tmp_path / f"live-{i}.db"))
                assert result.returncode == 0, result.stderr
                assert "1 deployment, 1 revision, 1 token" in result.stdout
            now = stream.ok
            wait_for(lambda: stream.ok > now + 20, 60, "traffic after the backups")
        assert stream.failures == []
        assert stat.S_IMODE((tmp_path / "live-0.db").stat().st_mode) == 0o600

        live_inode = (state_dir / "state.db").stat().st_ino
        refused = inst.cli("restore", str(tmp_path / "live-0.db"))
        assert refused.returncode == 1 and "is running with state dir" in refused.stderr, refused.stderr
        assert (state_dir / "state.db").stat().st_ino == live_inode  # the live file was not replaced
        assert not list(state_dir.glob("state.db.replaced-*"))
    finally:
        stop_instance(inst)

    saved = run_cli("backup", str(tmp_path / "stopped.db"), "--state-dir", str(state_dir))
    assert saved.returncode == 0, saved.stderr
    original = rows(state_dir / "state.db")
    assert original["tokens"] and original["audit"] and original["events"] and original["revisions"]
    _cut_mid_page(state_dir / "state.db")
    restored = run_cli("restore", str(tmp_path / "stopped.db"), "--state-dir", str(state_dir))
    assert restored.returncode == 0, restored.stderr
    assert "restored" in restored.stdout and "1 deployment, 1 revision, 1 token" in restored.stdout
    assert "the replaced database is kept as" in restored.stdout
    assert rows(state_dir / "state.db") == original
    assert len(list(state_dir.glob("state.db.replaced-*"))) == 1
    listed = run_cli("token", "list", "--state-dir", str(state_dir))
    assert listed.returncode == 0 and "ci" in listed.stdout


def test_the_controller_keeps_rotating_snapshots(tmp_path):
    state_dir = tmp_path / "state"
    spec = write_spec(tmp_path, "state:\n  snapshot_interval_s: 0.2\n  snapshot_keep: 2\n")
    inst = start_instance(spec, state_dir, command="up")
    seen: set[str] = set()

    def rotated() -> list[str]:
        names = [p.name for p in (state_dir / "snapshots").glob("state-*.db")]
        seen.update(names)
        return names

    try:
        wait_for(lambda: len(rotated()) <= 3 and len(seen) >= 6, 60, "six snapshots taken")
    finally:
        stop_instance(inst)
    left = rotated()
    assert len(left) == 2 and sorted(left) == sorted(seen)[-len(left):]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (state_dir / "snapshots").iterdir())


def test_lost_state_names_the_processes_still_running_and_its_restore_adopts_them(tmp_path):
    state_dir = tmp_path / "state"
    spec = write_spec(tmp_path)
    first = start_instance(spec, state_dir, command="up")
    second = None
    before = {(r["kind"], r["id"]): r["pid"] for r in first.status()}
    try:
        assert first.cli("backup").returncode == 0  # snapshots/backup-<now>.db: the newest snapshot
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
        (state_dir / "state.db").write_bytes(b"")  # the state is lost; its processes keep serving
        assert all(pid_alive(p) for p in before.values())

        result = run_cli("up", "-f", str(spec), "--no-auth", "--port", str(first.port), "--api-port", "0",
                         "--state-dir", str(state_dir))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1 and "in use" not in message, message
        assert "is empty (0 bytes)" in message
        assert f"gateway g0 (pid {before[('gateway', 'g0')]})" in message
        assert f"replica slow/r0 (pid {before[('replica', 'r0')]})" in message
        command = re.search(r"`steady restore (\S+) --state-dir (\S+)`", message)
        assert command is not None and "/snapshots/backup-" in command.group(1), message

        restored = run_cli("restore", command.group(1), "--state-dir", command.group(2))
        assert restored.returncode == 0, restored.stderr
        second = start_instance(spec, state_dir, command="up", port=first.port)
        assert {(r["kind"], r["id"]): r["pid"] for r in second.status()} == before  # adopted, not restarted
    finally:
        stop_instance(second or first)
        for pid in before.values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
