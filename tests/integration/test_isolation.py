"""Another user on the same machine gets nothing: not the state, not the sockets, not the control plane;
services get a clean environment, their secrets, and never a platform token."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLES, FIXTURES, pid_alive, run_cli, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration

INTRUDER = "steadyintruder"
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable


@pytest.fixture(scope="module")
def intruder() -> pwd.struct_passwd:
    """A second, unprivileged Unix user, created for these tests and removed after."""
    if os.geteuid() != 0:
        pytest.skip("creating a second Unix user needs root (CI runs as root)")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
                   capture_output=True)
    try:
        yield pwd.getpwnam(INTRUDER)
    finally:
        subprocess.run(["userdel", INTRUDER], capture_output=True)


@pytest.fixture
def shared_dir(tmp_path_factory) -> Path:
    """A directory every user can reach (as a home directory or /srv would be)."""
    root = Path(os.environ["TMPDIR"])
    os.chmod(root, 0o711)
    shared = tmp_path_factory.mktemp("shared", numbered=True)
    for parent in [shared, *shared.parents]:
        if parent == root.parent:
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o711)
    return shared


def as_intruder(code: str) -> dict:
    """Run a Python snippet as the other user; it prints one JSON object."""
    result = subprocess.run([SYSTEM_PYTHON, "-c", textwrap.dedent(code)], user=INTRUDER, group=INTRUDER,
                            extra_groups=[], cwd="/", env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_another_user_can_neither_read_the_state_nor_reach_any_socket_nor_use_the_tcp_api(intruder, shared_dir):
    inst = start_instance(EXAMPLES / "echo", shared_dir / "state", "--replicas", "1", "--gateways", "1")
    try:
        meta = inst.meta()
        replica = next(r for r in inst.status() if r["kind"] == "replica")
        endpoint = next(row for row in _processes(inst) if row["id"] == replica["id"])["endpoint"]
        state = inst.state_dir
        assert mode(state) == 0o700 and mode(state / "state.db") == 0o600 and mode(state / "logs") == 0o700
        assert all(mode(p) == 0o600 for p in (state / "logs").iterdir())
        socket_dir = Path(meta["api_socket"]).parent
        assert mode(socket_dir) == 0o700 and os.lstat(socket_dir).st_uid == os.geteuid()
        seen = as_intruder(f"""
            import json, socket, urllib.request, urllib.error
            out = {{}}
            def attempt(name, fn):
                try:
                    fn(); out[name] = "ok"
                except urllib.error.HTTPError as exc:
                    out[name] = exc.code
                except OSError as exc:
                    out[name] = type(exc).__name__
            attempt("read db", lambda: open({str(state / 'state.db')!r}, "rb").read())
            attempt("list state", lambda: __import__("os").listdir({str(state)!r}))
            def connect(path):
                s = socket.socket(socket.AF_UNIX); s.connect(path); s.close()
            attempt("control socket", lambda: connect({meta['api_socket']!r}))
            attempt("replica socket", lambda: connect({endpoint.removeprefix('unix:')!r}))
            api = {meta['api_url']!r}
            attempt("tcp api read", lambda: urllib.request.urlopen(api + "/v1/deployments", timeout=10))
            body = json.dumps({{"spec": {{"service": "/tmp/pwn.py"}}}}).encode()
            put = urllib.request.Request(api + "/v1/deployments/pwn", data=body, method="PUT",
                                         headers={{"content-type": "application/json"}})
            attempt("tcp api deploy", lambda: urllib.request.urlopen(put, timeout=10))
            print(json.dumps(out))
        """)
        assert seen == {"read db": "PermissionError", "list state": "PermissionError",
                        "control socket": "PermissionError", "replica socket": "PermissionError",
                        "tcp api read": 401, "tcp api deploy": 401}
        assert [d["name"] for d in inst.api("GET", "/v1/deployments").json()] == ["echo"]
    finally:
        stop_instance(inst)


def _processes(inst) -> list[dict]:
    import sqlite3

    with sqlite3.connect(inst.state_dir / "state.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM processes")]


def test_sockets_of_a_deep_state_dir_live_in_a_fresh_private_directory_removed_on_stop(tmp_path):
    deep = tmp_path / ("d" * 60) / "state"
    tmp_root = Path(os.environ["TMPDIR"])
    before = {p.name for p in tmp_root.iterdir()}
    dirs = []
    for _ in range(2):
        inst = start_instance(EXAMPLES / "echo", deep, "--replicas", "1", "--gateways", "1")
        socket_dir = Path(inst.meta()["api_socket"]).parent
        assert socket_dir.parent == tmp_root and socket_dir.name.startswith("steady-")
        assert mode(socket_dir) == 0o700 and os.lstat(socket_dir).st_uid == os.geteuid()
        assert inst.post_json("/echo", {"message": "hi"})[0] == 200
        assert stop_instance(inst) == 0
        assert not socket_dir.exists()
        dirs.append(socket_dir.name)
    assert dirs[0] != dirs[1]  # not derived from the state dir's path: nobody can claim it in advance
    assert {p.name for p in tmp_root.iterdir()} == before  # nothing left behind


def test_a_socket_directory_someone_else_could_use_is_refused_by_name(tmp_path):
    deep = tmp_path / ("d" * 60) / "state"
    inst = start_instance(EXAMPLES / "echo", deep, "--replicas", "1", "--gateways", "1")
    socket_dir = Path(inst.meta()["api_socket"]).parent
    pids = [r["pid"] for r in inst.status() if r["pid"]]
    inst.proc.kill()  # the controller dies; its record of the socket dir stays
    inst.proc.wait(30)
    try:
        os.chmod(socket_dir, 0o777)
        result = run_cli("serve", str(EXAMPLES / "echo"), "--port", "0", "--state-dir", str(deep))
        assert result.returncode == 1
        assert str(socket_dir) in result.stderr and "mode 777" in result.stderr and "chmod 700" in result.stderr
    finally:
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(socket_dir, ignore_errors=True)


SECRET_SPEC = """\
deployments:
  nosy:
    service: {service}
    replicas: 1
    env: {{PLAIN: visible}}
    forward_identity: true
    secrets:
      API_KEY: {{from_env: NOSY_API_KEY}}
      DB_PASSWORD: {{from_file: db.pass, mount: file}}
  quiet:
    service: {service}
    replicas: 1
gateway:
  processes: 2
"""


@pytest.fixture
def nosy(tmp_path, monkeypatch):
    spec = tmp_path / "steady.yaml"
    spec.write_text(SECRET_SPEC.format(service=FIXTURES / "nosy"))
    (tmp_path / "db.pass").write_text("pa55-from-file\n")
    monkeypatch.setenv("NOSY_API_KEY", "key-from-env-123")
    monkeypatch.setenv("STEADY_TOKEN", "st_deadbeef_the-operators-admin-token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-cloud-credential")
    inst = start_instance(spec, tmp_path / "state", "--auth", command="up")
    monkeypatch.delenv("STEADY_TOKEN")
    tokens = {}
    for name, role in (("alice", "invoker"), ("vera", "viewer")):
        created = inst.cli("token", "create", "--role", role, "--name", name)
        assert created.returncode == 0, created.stderr
        tokens[name] = created.stdout.strip()
    yield inst, tokens
    stop_instance(inst)


def _call(inst, path: str, token: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{inst.url}{path}", json={}, headers={"authorization": f"Bearer {token}", **headers},
                      timeout=30)


SECRET_VALUES = ("key-from-env-123", "pa55-from-file", "the-operators-admin-token", "operator-cloud-credential")


def test_services_see_their_env_and_secrets_and_nothing_of_the_operators_environment(nosy):
    inst, tokens = nosy
    wait_for(lambda: _call(inst, "/nosy/environ", tokens["alice"]).status_code == 200, 30, "tokens to be known")
    environ = _call(inst, "/nosy/environ", tokens["alice"]).json()
    assert environ.get("PLAIN") == "visible" and environ.get("API_KEY") == "key-from-env-123", environ
    assert not {"STEADY_TOKEN", "AWS_SECRET_ACCESS_KEY", "NOSY_API_KEY", "DB_PASSWORD"} & set(environ)
    assert _call(inst, "/nosy/secret_files", tokens["alice"]).json() == {"DB_PASSWORD": "pa55-from-file|mode=600"}
    assert "API_KEY" not in _call(inst, "/quiet/environ", tokens["alice"]).json()


def test_a_viewer_sees_secret_names_and_never_their_values(nosy):
    inst, tokens = nosy
    api = inst.meta()["api_url"]
    viewer = {"authorization": f"Bearer {tokens['vera']}"}
    shown = httpx.get(f"{api}/v1/deployments/nosy", headers=viewer, timeout=30)
    assert shown.status_code == 200 and set(shown.json()["spec"]["secrets"]) == {"API_KEY", "DB_PASSWORD"}
    revisions = httpx.get(f"{api}/v1/deployments/nosy/revisions", headers=viewer, timeout=30)
    everything = [shown.text, revisions.text, httpx.get(f"{api}/v1/events?limit=10000", headers=viewer).text,
                  inst.cli("status", "--json").stdout, inst.cli("events", "--json", "-n", "10000").stdout,
                  inst.cli("revisions", "nosy", "--json").stdout, inst.cli("audit", "--json").stdout,
                  *(p.read_text(errors="replace") for p in (inst.state_dir / "logs").iterdir()),
                  (inst.state_dir / "routes.json").read_text()]
    for text in everything:
        assert not [v for v in SECRET_VALUES if v in text], text[:500]


def test_replicas_learn_who_called_but_never_the_token(nosy):
    inst, tokens = nosy
    wait_for(lambda: _call(inst, "/nosy/caller", tokens["alice"]).status_code == 200, 30, "tokens to be known")
    spoofed = {"x-steady-caller": "name=admin; role=admin"}
    for path in ("/nosy/caller", "/nosy/caller_async"):
        assert _call(inst, path, tokens["alice"], **spoofed).json() == {"name": "alice", "role": "invoker"}
    assert _call(inst, "/quiet/caller", tokens["alice"], **spoofed).json() == {"name": None, "role": None}
    seen = _call(inst, "/nosy/environ", tokens["alice"]).text
    assert tokens["alice"] not in seen


def test_the_tcp_control_api_needs_a_token_even_without_auth_on_the_data_path(serve, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  echo:\n    service: {EXAMPLES / 'echo'}\n    replicas: 1\n")
    inst = serve(str(spec), command="up")  # --no-auth: the gateway takes calls without tokens
    api = inst.meta()["api_url"]
    assert inst.post_json("/echo/echo", {"message": "open"})[0] == 200
    assert httpx.get(f"{api}/v1/deployments", timeout=30).status_code == 401
    created = inst.cli("token", "create", "--role", "viewer", "--name", "v")
    viewer = {"authorization": f"Bearer {created.stdout.strip()}"}
    assert httpx.get(f"{api}/v1/deployments", headers=viewer, timeout=30).status_code == 200
    assert httpx.post(f"{api}/v1/deployments/echo/scale", json={"replicas": 2}, headers=viewer,
                      timeout=30).status_code == 403
    assert inst.cli("scale", "echo", "2").returncode == 0  # the CLI goes through the private socket
    audit = json.loads(inst.cli("audit", "--json").stdout)
    assert any(r["actor"].startswith("local:") and r["target"] == "POST /v1/deployments/echo/scale" for r in audit)


LEAKED = "sk-live-0123456789"


def start_leaky(tmp_path, monkeypatch, leak_in: str):
    """The leaks_secret fixture with its API_KEY secret, quoting it in ``setup`` or ``health``."""
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  leaky:\n    service: {FIXTURES / 'leaks_secret'}\n    replicas: 1\n"
                    f"    env: {{LEAK_IN: {leak_in}}}\n"
                    "    secrets: {API_KEY: {from_env: LEAKY_KEY}}\ngateway:\n  processes: 1\n")
    monkeypatch.setenv("LEAKY_KEY", LEAKED)
    return start_instance(spec, tmp_path / "state", command="up", wait_ready=leak_in != "setup")


def test_a_replica_error_that_quotes_a_secret_shows_it_masked_in_events_and_status(tmp_path, monkeypatch):
    inst = start_leaky(tmp_path, monkeypatch, "setup")
    try:
        wait_for(lambda: inst.events("exited"), 90, "the replica's failed setup")
        messages = [e["message"] for e in inst.events()]
        status = inst.cli("status", "--json").stdout
        assert any("the upstream refused key '***'" in m for m in messages), messages
        assert not any("sk-live-0123456789" in m for m in messages) and "sk-live-0123456789" not in status
    finally:
        stop_instance(inst)


def test_a_secret_a_replica_logs_is_masked_in_the_log_store_viewers_read(tmp_path, monkeypatch):
    inst = start_leaky(tmp_path, monkeypatch, "setup")
    try:
        def logged() -> list[str]:
            result = inst.cli("logs", "leaky", "--json", "--limit", "1000")
            return [line for line in result.stdout.splitlines() if "the upstream refused key" in line]

        lines = wait_for(logged, 90, "the replica's setup error in the log store")
        assert all("sk-live-0123456789" not in line for line in lines) and any("***" in line for line in lines)
    finally:
        stop_instance(inst)


def test_a_failing_health_check_that_quotes_a_secret_shows_it_masked_clean_and_capped(tmp_path, monkeypatch):
    inst = start_leaky(tmp_path, monkeypatch, "health")
    try:
        assert inst.post_json("/leaky/sicken", {})[0] == 200
        wait_for(lambda: inst.events("unhealthy"), 60, "the replica to fail a health check")
        messages = [e["message"] for e in inst.events() if e["deployment"] == "leaky"]
        status = inst.cli("status", "--json").stdout
        assert any("key *** expired" in m for m in messages), messages
        assert not any("sk-live-0123456789" in m or "\x1b" in m for m in messages)
        assert "sk-live-0123456789" not in status and "\\u001b" not in status
        assert max(len(m) for m in messages) < 5_000  # a 10 KB report is capped
        assert "sk-live-0123456789" not in "".join(inst.output)  # nor on the controller's console
    finally:
        stop_instance(inst)


def log_replaced_by_symlink(tmp_path) -> tuple[Path, Path, Path]:
    """A stopped instance whose replica log is now a symlink to another file: (state dir, link, victim)."""
    state_dir = tmp_path / "state"
    inst = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "1")
    assert stop_instance(inst) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    link = state_dir / "logs" / "echo-r0.log"
    link.unlink()
    link.symlink_to(victim)
    return state_dir, link, victim


def test_a_symlink_another_user_planted_in_the_state_dir_is_refused_and_never_written_through(intruder, tmp_path):
    state_dir, link, victim = log_replaced_by_symlink(tmp_path)
    os.lchown(link, intruder.pw_uid, intruder.pw_gid)  # as if they had planted it while the dir was open
    result = run_cli("serve", str(EXAMPLES / "echo"), "--port", "0", "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert f"{link} belongs to uid {intruder.pw_uid}, not to you" in result.stderr
    assert victim.read_text() == "untouched\n"


def test_a_log_path_that_is_a_symlink_is_never_followed(tmp_path):
    state_dir, _, victim = log_replaced_by_symlink(tmp_path)  # our own symlink: allowed, never written through
    again = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "1", wait_ready=False)
    try:
        wait_for(lambda: any("symbolic links" in e["message"] for e in again.events("start_failed")), 60,
                 "the replica start to be refused")
        assert victim.read_text() == "untouched\n"
    finally:
        stop_instance(again)


def test_recovery_refuses_another_users_listener_even_with_a_gateways_command_line(intruder, shared_dir):
    state_dir = shared_dir / "state"
    inst = start_instance(EXAMPLES / "echo", state_dir, "--replicas", "1", "--gateways", "1")
    rows = _processes(inst)
    [gateway] = [r for r in rows if r["kind"] == "gateway"]
    inst.proc.kill()
    inst.proc.wait(30)
    for row in rows:
        os.killpg(row["pid"], signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(r["pid"]) for r in rows), 30, "the instance's processes to exit")
    # The other user listens on the port, its argv copied from the dead gateway (anyone can set argv).
    squat = ("import socket, sys, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
             f" s.bind(('127.0.0.1', {inst.port})); s.listen(8); print('up', flush=True); time.sleep(120)")
    forged = [SYSTEM_PYTHON, "-c", squat, "steadyserve.gateway.main", "--admin-endpoint", gateway["endpoint"],
              "--routes", str(state_dir.resolve() / "routes.json")]
    squatter = subprocess.Popen(forged, user=INTRUDER, group=INTRUDER, extra_groups=[], cwd="/",
                                stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline().strip() == "up"
        result = run_cli("serve", str(EXAMPLES / "echo"), "--replicas", "1", "--gateways", "1", "--port",
                         str(inst.port), "--api-port", "0", "--state-dir", str(state_dir))
        assert result.returncode == 1, result.stdout
        assert f"port {inst.port} is held by pid {squatter.pid}, not by this instance's gateways" in result.stderr
    finally:
        squatter.kill()
        squatter.wait(10)
