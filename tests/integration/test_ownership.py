"""The controller acts only on what is its own: processes it adopts, the port it recovers,
the directories it trusts and removes, and daemons its replicas leave behind."""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import psutil
import pytest
from conftest import EXAMPLES, FIXTURES, pid_alive, run_cli, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_snapshot_restored_into_another_state_dir_adopts_none_of_the_first_instances_processes(tmp_path):
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    first = start_instance(EXAMPLES / "echo", first_dir, "--replicas", "1", "--gateways", "1")
    second = None
    first_pids = {r["pid"] for r in first.status() if r["pid"]}
    try:
        snapshot = tmp_path / "one.db"
        assert first.cli("backup", str(snapshot)).returncode == 0
        restored = run_cli("restore", str(snapshot), "--state-dir", str(second_dir))
        assert restored.returncode == 0, restored.stderr
        # The restored DB names the first instance's controller, gateway and replica: none is the second's.
        second = start_instance(EXAMPLES / "echo", second_dir, "--replicas", "1", "--gateways", "1")
        second_pids = {r["pid"] for r in second.status() if r["pid"]}
        assert second_pids and not second_pids & first_pids
        assert all(pid_alive(pid) for pid in first_pids)
        assert first.post_json("/echo", {"message": "one"})[0] == 200
        assert second.post_json("/echo", {"message": "two"})[0] == 200
        assert stop_instance(second) == 0
        assert all(pid_alive(pid) for pid in first_pids)  # stopping the second left the first alone
    finally:
        if second is not None:
            stop_instance(second)
        stop_instance(first)


def test_recovery_refuses_a_port_that_someone_else_listens_on(tmp_path):
    state_dir = tmp_path / "state"
    inst = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "1")
    pids = [r["pid"] for r in inst.status() if r["pid"]]
    inst.proc.kill()  # the controller dies, then its gateway and replica
    inst.proc.wait(30)
    _kill_all(pids)
    wait_for(lambda: not any(pid_alive(p) for p in pids), 30, "the instance's processes to exit")
    with socket.socket() as squatter:  # someone else takes the port while no gateway holds it
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", inst.port))
        squatter.listen(8)
        result = run_cli("serve", str(EXAMPLES / "echo"), "--port", str(inst.port), "--api-port", "0",
                         "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert f"port {inst.port} is held by pid {os.getpid()}, not by this instance's gateways" in result.stderr
    assert "Traceback" not in result.stderr


def test_recovery_with_its_own_gateways_on_the_port_goes_on(tmp_path):
    state_dir = tmp_path / "state"
    inst = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "2")
    before = {(r["kind"], r["id"]): r["pid"] for r in inst.status()}
    inst.proc.kill()
    inst.proc.wait(30)
    again = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "2", port=inst.port)
    try:
        assert {(r["kind"], r["id"]): r["pid"] for r in again.status()} == before
    finally:
        assert stop_instance(again) == 0


def _daemon_parent(pid: int) -> int | None:
    try:
        return psutil.Process(pid).ppid()
    except psutil.NoSuchProcess:
        return None


def test_daemons_that_leave_a_replicas_process_group_do_not_outlive_it(tmp_path):
    inst = start_instance(FIXTURES / "daemonizer", tmp_path / "state", "--replicas", "1", "--gateways", "1")
    daemons = []
    try:
        status, _, body = inst.post_json("/spawn_daemon", {})
        assert status == 200
        daemon = body["pid"]
        daemons.append(daemon)
        # Handed to the controller (its subreaper), not to init, when its parent exited.
        assert _daemon_parent(daemon) == inst.proc.pid
        replica = inst.process("replica", "r0")["pid"]
        os.kill(replica, signal.SIGKILL)
        # Killed and reaped: no zombie left in the process table either.
        wait_for(lambda: not os.path.exists(f"/proc/{daemon}"), 60, "the daemon of the killed replica to go")
        assert any(str(daemon) in e["message"] for e in inst.events("orphan_killed"))

        wait_for(inst.all_ready, 90, "the replacement replica")
        status, _, kept = inst.post_json("/spawn_daemon", {})
        status2, _, anonymous = inst.post_json("/spawn_daemon", {"clear_env": True})  # names no replica
        assert status == status2 == 200
        daemons += [kept["pid"], anonymous["pid"]]
        assert pid_alive(kept["pid"]) and pid_alive(anonymous["pid"])  # its replica runs: left to it
        assert stop_instance(inst) == 0
        assert not pid_alive(kept["pid"]) and not pid_alive(anonymous["pid"])  # nothing outlives Ctrl-C
    finally:
        stop_instance(inst)
        _kill_all(daemons)


def _deep(tmp_path: Path) -> Path:
    return tmp_path / ("d" * 60) / "state"


def test_a_socket_dir_record_naming_a_directory_steady_did_not_make_is_neither_used_nor_removed(tmp_path):
    state_dir = _deep(tmp_path)
    state_dir.mkdir(parents=True, mode=0o700)
    precious = tmp_path / "precious"
    precious.mkdir(mode=0o700)
    (precious / "keep.txt").write_text("mine")
    (state_dir / "socket-dir").write_text(f"{precious}\n")
    result = run_cli("serve", str(EXAMPLES / "echo"), "--port", "0", "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert f"names {precious}, which steadyserve did not create" in result.stderr
    assert (precious / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("victim", [".", "state.db"])
def test_a_state_dir_others_could_write_is_refused_not_silently_tightened(tmp_path, victim):
    state_dir = tmp_path / "state"
    inst = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "1")
    assert stop_instance(inst) == 0
    path = (state_dir / victim).resolve()
    os.chmod(path, 0o777 if path.is_dir() else 0o666)
    result = run_cli("serve", str(EXAMPLES / "echo"), "--port", "0", "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert f"{path} has mode" in result.stderr and "other users could" in result.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) in (0o777, 0o666)  # left for the operator to check


def test_a_state_dir_others_could_only_read_is_tightened(tmp_path):
    state_dir = tmp_path / "state"
    inst = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "1")
    assert stop_instance(inst) == 0
    os.chmod(state_dir, 0o755)
    os.chmod(state_dir / "state.db", 0o644)
    again = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "1")
    try:
        assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(state_dir / "state.db").st_mode) == 0o600
    finally:
        assert stop_instance(again) == 0


def test_children_the_controller_inherited_from_its_entrypoint_are_left_alone(tmp_path):
    import subprocess

    from conftest import STEADY, Instance, free_port

    state_dir, pid_file = tmp_path / "state", tmp_path / "sidecar.pid"
    port = free_port()
    steady = " ".join(STEADY)
    # An entrypoint script: starts a sidecar, then becomes the controller (exec keeps the child).
    script = (f"sleep 300 & echo $! > {pid_file}; exec {steady} serve {EXAMPLES / 'echo'} --replicas 1"
              f" --gateways 1 --port {port} --api-port 0 --state-dir {state_dir}")
    proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    inst = Instance(proc, port, state_dir)
    sidecar = None
    try:
        wait_for(lambda: (state_dir / "state.db").exists() and inst.meta().get("controller_pid") == str(proc.pid)
                 and inst.all_ready(), 90, "the instance to be ready")
        sidecar = int(pid_file.read_text())
        assert _daemon_parent(sidecar) == proc.pid
        assert stop_instance(inst) == 0
        assert pid_alive(sidecar)  # not an orphan of any replica: not killed at stop
        assert not inst.events("orphan_killed")
    finally:
        stop_instance(inst)
        if sidecar is not None and pid_alive(sidecar):
            os.kill(sidecar, signal.SIGKILL)


def test_token_create_refuses_a_state_dir_others_could_write(tmp_path):
    state_dir = tmp_path / "open"
    state_dir.mkdir()
    os.chmod(state_dir, 0o777)
    result = run_cli("token", "create", "--role", "admin", "--name", "me", "--state-dir", str(state_dir))
    assert result.returncode == 1 and "has mode 777" in result.stderr and "st_" not in result.stdout
    assert not (state_dir / "state.db").exists()
    fresh = tmp_path / "fresh"
    created = run_cli("token", "create", "--role", "admin", "--name", "me", "--state-dir", str(fresh))
    assert created.returncode == 0 and stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
