"""The one wrapper around OS processes that the controller uses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import psutil  # type: ignore[import-untyped,unused-ignore]


class ProcessHandle(Protocol):
    """What the controller does with a process it supervises (a unit test passes a fake)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...

    def stop_leftovers(self) -> None:
        """After the process exited: SIGKILL what it started and left behind."""
        ...

    def wait(self, timeout_s: float) -> int | None: ...

    def resident_bytes(self) -> int | None: ...


class Launcher(Protocol):
    def start_module(self, module: str, args: list[str], log_path: Path,
                     extra_env: dict[str, str] | None = None) -> ProcessHandle: ...


def resident_bytes(pid: int) -> int | None:
    """Resident memory of a process and its descendants (what a container memory limit counts); None if gone."""
    try:
        proc = psutil.Process(pid)
        total = int(proc.memory_info().rss)
        for child in proc.children(recursive=True):
            try:
                total += int(child.memory_info().rss)
            except psutil.Error:  # exited meanwhile
                pass
        return total
    except psutil.Error:
        return None


# Every child this process starts, by pid: what else is a child of ours was handed to us as an
# orphan (see orphans.py). The lock spans the fork, so no child is ever seen before it is known.
_spawn_lock = threading.Lock()
_spawned: dict[int, subprocess.Popen[bytes]] = {}


def spawn(args: list[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen, recorded as started by us."""
    with _spawn_lock:
        popen = subprocess.Popen(args, **popen_kwargs)
        _spawned[popen.pid] = popen
        for pid in [pid for pid, p in _spawned.items() if p.returncode is not None]:
            del _spawned[pid]  # reaped: the pid may be reused by anyone
        return popen


def started_here(pid: int) -> bool:
    """Whether ``pid`` is a child this process started and has not reaped (call under spawn_lock())."""
    popen = _spawned.get(pid)
    return popen is not None and popen.returncode is None


def spawn_lock() -> threading.Lock:
    return _spawn_lock


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
        kill_group(self.pid)

    def stop_leftovers(self) -> None:
        kill_group(self.pid)

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def resident_bytes(self) -> int | None:
        return None if self._popen.poll() is not None else resident_bytes(self._popen.pid)


class ProcessLauncher:
    """Starts Python module entry points with output appended to a log file."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._env = env

    def start_module(self, module: str, args: list[str], log_path: Path,
                     extra_env: dict[str, str] | None = None) -> ManagedProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a symlink planted where a log goes would have it written anywhere.
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "ab") as log:
            popen = spawn(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**(self._env if self._env is not None else os.environ), **(extra_env or {})},
                # Own session: a terminal's Ctrl-C reaches only the controller,
                # which then stops the children in order.
                start_new_session=True,
            )
        return ManagedProcess(popen)


UNKNOWN_EXIT = 999  # an adopted process ended; not our child, so its status is not ours to read
NODE_LOST_EXIT = 998  # a replica on a cluster node is gone with its actor or its node: no status to read


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class AdoptedProcess:
    """A replica or gateway left running by a previous controller, found by pid."""

    def __init__(self, pid: int) -> None:
        self._pid = pid

    @property
    def pid(self) -> int:
        return self._pid

    def poll(self) -> int | None:
        return None if pid_alive(self._pid) else UNKNOWN_EXIT

    def signal(self, sig: int) -> None:
        try:
            os.kill(self._pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        kill_group(self.pid)
        try:  # and the process itself, should it lead no group of its own
            os.kill(self._pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop_leftovers(self) -> None:
        kill_group(self.pid)

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while pid_alive(self._pid):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return UNKNOWN_EXIT

    def resident_bytes(self) -> int | None:
        return resident_bytes(self._pid) if pid_alive(self._pid) else None


def kill_group(pid: int) -> None:
    """SIGKILL a process we started and everything it started: each runs in a session of its own
    (start_new_session), so its process group id is its pid, and children it forked stay in it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
