"""Processes that escaped a replica and were handed to the controller.

A service can start a daemon that leaves its replica's process group (double fork plus
``setsid``); killing the group then misses it, and when the replica goes it would live on,
holding memory, ports or GPUs. The controller makes itself the "child subreaper" of
everything it starts, so such orphans are re-parented to it rather than to init. Each
replica's environment names the replica (``STEADY_REPLICA``), and daemons inherit it: an
orphan whose replica is gone is killed; one whose replica still runs is left to it; one
that names no replica is killed when the controller stops. Exited orphans are reaped, so
none lingers as a zombie. ``to_kill`` is the pure decision.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped,unused-ignore]

from .processes import spawn_lock, started_here

REPLICA_MARK = "STEADY_REPLICA"  # "<deployment>/<replica id>/<generation>", in every replica's environment
_PR_SET_CHILD_SUBREAPER = 36


def replica_mark(deployment: str, replica_id: str, generation: int) -> str:
    return f"{deployment}/{replica_id}/{generation}"


@dataclass(frozen=True)
class Orphan:
    pid: int
    replica: str | None  # the replica it came from, if its environment says
    exited: bool  # a zombie: only reaping is left
    command: str

    def describe(self) -> str:
        origin = f"from replica {self.replica}" if self.replica else "of unknown origin"
        return f"pid {self.pid} ({self.command}) {origin}"


_INHERITED: set[int] = set()  # children this process already had when it became a subreaper


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux); False where unsupported.

    Children it already has (a shell entrypoint that started others, then exec'd steady) are
    not orphans of any replica and are left alone."""
    _INHERITED.update(c.pid for c in psutil.Process().children())
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def find() -> list[Orphan]:
    """Children of this process that it did not start."""
    me = psutil.Process()
    found = []
    with spawn_lock():  # a child being started right now is already recorded
        children = [c for c in me.children() if not started_here(c.pid) and c.pid not in _INHERITED]
    for child in children:
        try:
            exited = child.status() == psutil.STATUS_ZOMBIE
            replica = None if exited else child.environ().get(REPLICA_MARK)
            command = " ".join(child.cmdline())[:80] if not exited else ""
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:  # it changed its user (setuid program): origin unknown
            replica, exited, command = None, False, "?"
        found.append(Orphan(child.pid, replica, exited, command))
    return found


def to_kill(orphans: Iterable[Orphan], running_replicas: set[str], stopping: bool) -> list[Orphan]:
    """Which orphans must go: those whose replica no longer runs, and all of them at stop."""
    return [o for o in orphans if not o.exited
            and (stopping or (o.replica is not None and o.replica not in running_replicas))]


def kill(orphan: Orphan) -> None:
    """SIGKILL the orphan and the process group it leads (setsid made it a leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(orphan.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(orphan.pid, signal.SIGKILL)


def reap(orphans: Iterable[Orphan]) -> None:
    """Collect the exit status of orphans that ended (they are ours to wait for, and no one else's)."""
    for orphan in orphans:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(orphan.pid, os.WNOHANG)


def wait_reaped(timeout_s: float) -> None:
    """After killing them all: reap each as it exits, for at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (left := find()) and time.monotonic() < deadline:
        reap(left)
        time.sleep(0.02)
