"""The one wrapper around OS processes that the controller uses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class ManagedProcess:
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        """Exit code if it has exited (negative: killed by that signal), else None."""
        return self._popen.poll()

    def signal(self, sig: int) -> None:
        try:
            self._popen.send_signal(sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None


class ProcessLauncher:
    """Starts Python module entry points with output appended to a log file."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._env = env

    def start_module(self, module: str, args: list[str], log_path: Path,
                     extra_env: dict[str, str] | None = None) -> ManagedProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**(self._env if self._env is not None else os.environ), **(extra_env or {})},
                # Own session: a terminal's Ctrl-C reaches only the controller,
                # which then stops the children in order.
                start_new_session=True,
            )
        return ManagedProcess(popen)
