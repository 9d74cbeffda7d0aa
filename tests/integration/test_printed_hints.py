"""The commands `steady serve` and `steady up` print once ready, run exactly as printed.

Each runs with ``bash -c`` in a new shell: another working directory, no STEADY_* variables, and
the virtual environment on PATH only where the case says it was activated. It must exit 0 with
the handler's answer. What the printed lines tell the user to run first (the token line) is run
first, and what it exports is kept, as a user's shell would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, FIXTURES, Instance, wait_for
from tls_helpers import make_certificate

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).absolute().parent
FULL_STEADY = str(VENV_BIN / "steady")
COMMAND_LINE = re.compile(r"^\s+(token|try|or|openai|status):\s+(.+?)\s*$")
SMALL = ("--replicas", "1", "--gateways", "1")


def path_without_venv() -> str:
    """The PATH of a shell where the virtual environment was never activated."""
    kept = [entry for entry in os.environ.get("PATH", "").split(os.pathsep)
            if entry and Path(entry).absolute() != VENV_BIN]
    return os.pathsep.join(kept + [d for d in ("/usr/local/bin", "/usr/bin", "/bin") if d not in kept])


@pytest.fixture
def shell_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """The venv is not on PATH, for `steady serve` (it decides what to print by it) and the new shell."""
    path = path_without_venv()
    monkeypatch.setenv("PATH", path)
    for name in ("STEADY_TOKEN", "STEADY_URL", "STEADY_API_URL", "STEADY_CA_BUNDLE", "VIRTUAL_ENV"):
        monkeypatch.delenv(name, raising=False)
    return path


def printed_commands(inst: Instance) -> list[tuple[str, str]]:
    """(label, command) of each command line of the ready banner, in order."""
    def banner() -> list[str] | None:
        lines = "".join(inst.output).splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("up at ")), None)
        end = next((i for i, line in enumerate(lines) if start is not None and i > start
                    and line.strip().startswith("stop:")), None)
        return lines[start:end + 1] if start is not None and end is not None else None

    lines = wait_for(banner, 60, "the ready banner")
    return [(m[1], m[2]) for m in map(COMMAND_LINE.match, lines) if m]


def new_shell(path: str, **env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("STEADY_") and k != "VIRTUAL_ENV"}
    return {**base, "PATH": path, **env}


def run_as_printed(command: str, env: dict[str, str], cwd: Path, then: str = "") -> str:
    result = subprocess.run(["bash", "-c", command + then], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=90)
    assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def sent_body(command: str) -> Any:
    words = shlex.split(command)
    flag = "-d" if words[0] == "curl" else "--json"
    return json.loads(words[words.index(flag) + 1]) if flag in words else None


def run_all(commands: list[tuple[str, str]], env: dict[str, str], cwd: Path) -> None:
    """Run every printed command in order, as a user pasting them would, and check each answer:
    a call is answered with the body it sent (the handlers used here echo their input), a
    command without a body with the OpenAPI document."""
    assert {label for label, _ in commands} >= {"try", "status"}, commands
    for label, command in commands:
        if label == "token":  # it exports STEADY_TOKEN: the commands after it have it
            env = {**env, "STEADY_TOKEN": run_as_printed(command, env, cwd, then=' || exit\nprintf %s "$STEADY_TOKEN"')}
            assert env["STEADY_TOKEN"].startswith("st_"), "the token line exported no token"
            continue
        out = run_as_printed(command, env, cwd)
        if label == "status":
            assert "ready" in out
            continue
        answer, body = json.loads(out), sent_body(command)
        if body is None:
            assert answer["openapi"].startswith("3.") and answer["paths"], command
        else:
            assert answer == body, command


def test_serve_hints_name_steady_in_full_when_it_is_not_on_path(serve, shell_path, tmp_path):
    inst = serve(EXAMPLES / "echo", *SMALL)
    commands = printed_commands(inst)
    steady_commands = [c for label, c in commands if label in ("or", "status")]
    assert steady_commands and all(c.startswith(f"{FULL_STEADY} ") for c in steady_commands), commands
    assert f". {VENV_BIN / 'activate'}" in "".join(inst.output)  # how to put it on PATH instead
    assert "(1 gateway process)" in "".join(inst.output) and "echo: 1 replica," in "".join(inst.output)
    run_all(commands, new_shell(shell_path), tmp_path)


def test_serve_hints_say_steady_when_the_venv_is_activated(serve, shell_path, monkeypatch, tmp_path):
    activated = f"{VENV_BIN}{os.pathsep}{shell_path}"
    monkeypatch.setenv("PATH", activated)
    inst = serve(EXAMPLES / "echo", *SMALL)
    commands = printed_commands(inst)
    assert all(c.startswith("steady ") for label, c in commands if label in ("or", "status")), commands
    assert "not on PATH" not in "".join(inst.output)
    run_all(commands, new_shell(activated, VIRTUAL_ENV=str(VENV_BIN.parent)), tmp_path)


def test_tls_hints_trust_the_served_certificate(serve, shell_path, tmp_path):
    cert, key = make_certificate(tmp_path)
    inst = serve(EXAMPLES / "echo", *SMALL, "--tls-cert", str(cert), "--tls-key", str(key))
    commands = printed_commands(inst)
    calls = [c for label, c in commands if label in ("try", "or")]
    assert len(calls) == 2 and all(f"--cacert {cert}" in c for c in calls), calls
    assert f"https://127.0.0.1:{inst.port}/echo" in calls[0]
    run_all(commands, new_shell(shell_path), tmp_path)


def test_up_with_auth_hints_send_the_token_made_as_printed(serve, shell_path, tmp_path):
    """Handlers without example=: a body made from the parameter types, else the OpenAPI document."""
    service = FIXTURES / "no_example" / "service.py"
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  typed:\n    service: {service}:Typed\n    replicas: 1\n"
                    f"  opaque:\n    service: {service}:Opaque\n    replicas: 1\n"
                    "gateway:\n  processes: 1\n")
    inst = serve(spec, "--auth", command="up")
    commands = printed_commands(inst)
    assert commands[0][0] == "token", commands
    curls = [c for label, c in commands if c.startswith("curl")]
    assert len(curls) == 2 and all('"authorization: Bearer $STEADY_TOKEN"' in c for c in curls), curls
    assert curls[1].startswith(f"curl -s http://127.0.0.1:{inst.port}/opaque/openapi.json ")
    assert "unlock: no example=" in "".join(inst.output)
    run_all(commands, new_shell(shell_path), tmp_path)


def test_make_demo_takes_a_port():
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(["make", "-n", "-C", str(root), "demo", "PORT=9123"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "steady serve examples/digits --replicas 2 --port 9123" in result.stdout


def test_an_explicit_state_dir_names_the_instance_whatever_steady_url_says(serve):
    inst = serve(EXAMPLES / "echo", *SMALL)
    elsewhere = {**os.environ, "STEADY_URL": "http://127.0.0.1:9", "STEADY_API_URL": "http://127.0.0.1:9"}
    call = subprocess.run([FULL_STEADY, "call", "echo", "--json", '{"message": "hi"}', "--state-dir",
                           str(inst.state_dir)], capture_output=True, text=True, timeout=60, env=elsewhere)
    assert call.returncode == 0 and json.loads(call.stdout) == {"message": "hi"}, call.stderr
    status = subprocess.run([FULL_STEADY, "status", "--state-dir", str(inst.state_dir)], capture_output=True,
                            text=True, timeout=60, env=elsewhere)
    assert status.returncode == 0 and "ready" in status.stdout, status.stderr
    # Without --state-dir the variables decide, and the error says so.
    implicit = subprocess.run([FULL_STEADY, "call", "echo", "--json", "{}"], capture_output=True, text=True,
                              timeout=60, env=elsewhere, cwd=inst.state_dir.parent)
    assert implicit.returncode == 1 and "http://127.0.0.1:9 (from $STEADY_URL)" in implicit.stderr


def test_tls_hints_use_a_name_a_localhost_only_certificate_holds(serve, shell_path, tmp_path):
    cert, key = make_certificate(tmp_path, dns="localhost")
    inst = serve(EXAMPLES / "echo", *SMALL, "--tls-cert", str(cert), "--tls-key", str(key))
    commands = printed_commands(inst)
    calls = [c for label, c in commands if label in ("try", "or")]
    assert f"https://localhost:{inst.port}/echo" in calls[0] and f"--url https://localhost:{inst.port}" in calls[1]
    run_all(commands, new_shell(shell_path), tmp_path)


def test_stream_hints_print_items_as_printed(serve, shell_path, tmp_path):
    inst = serve(EXAMPLES / "chat", *SMALL)
    commands = dict(printed_commands(inst))
    assert commands["try"].startswith("curl -sN ") and " --stream " in commands["or"]
    env = new_shell(shell_path)
    events = run_as_printed(commands["try"], env, tmp_path).split("\n\n")
    assert all(isinstance(json.loads(e.removeprefix("data: ")), str) for e in events if e.strip())
    items = run_as_printed(commands["or"], env, tmp_path).splitlines()
    assert items and all(isinstance(json.loads(line), str) for line in items)
    openai = [line for line in run_as_printed(commands["openai"], env, tmp_path).splitlines() if line]
    assert openai[-1] == "data: [DONE]"
    assert json.loads(openai[0].removeprefix("data: "))["object"] == "chat.completion.chunk"


def test_binary_answer_hints_save_the_file_as_printed(serve, shell_path, tmp_path):
    inst = serve(EXAMPLES / "images", *SMALL)
    commands = dict(printed_commands(inst))
    env = new_shell(shell_path)
    for label in ("try", "or"):
        saved = tmp_path / "render.png"
        saved.unlink(missing_ok=True)
        run_as_printed(commands[label], env, tmp_path)
        assert saved.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), commands[label]
