"""Processes still running from a state directory, found by their command lines.

When the state database is lost, its record of which replicas, gateways and controller
run is lost with it; these processes keep serving (and holding the port). They are
named to the operator instead of being silently orphaned. ``classify`` is pure; only
``running_from`` looks at the process table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]

from .launch import GATEWAY_MODULE, REPLICA_MODULE
from .private_dirs import SOCKET_DIR_RECORD

_CLI_MODULE = "steadyserve.cli"
_CONTROLLER_COMMANDS = ("serve", "up")
_DEFAULT_STATE_DIR = ".steady"


@dataclass(frozen=True)
class Leftover:
    pid: int
    kind: str  # "replica", "gateway" or "controller"
    name: str  # "digits/r0", "g1", or "" for a controller

    def describe(self) -> str:
        return f"{self.kind} {self.name} (pid {self.pid})" if self.name else f"{self.kind} (pid {self.pid})"


def _option(cmdline: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(cmdline):
        if arg == flag and i + 1 < len(cmdline):
            return cmdline[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _is_cli(cmdline: Sequence[str]) -> bool:
    return _CLI_MODULE in cmdline or any(Path(arg).name == "steady" for arg in cmdline[:2])


def classify(pid: int, cmdline: Sequence[str], cwd: str | None, dirs: Sequence[Path]) -> Leftover | None:
    """The steadyserve process this command line is, if it works from one of ``dirs``.

    ``dirs``: the state directory first (resolved), then its socket directories.
    """
    if REPLICA_MODULE in cmdline or GATEWAY_MODULE in cmdline:
        prefixes = tuple(f"{d}/" for d in dirs)
        if not any(p in arg for arg in cmdline for p in prefixes):
            return None
        if REPLICA_MODULE in cmdline:
            return Leftover(pid, "replica", f"{_option(cmdline, '--deployment') or '?'}/{_option(cmdline, '--id') or '?'}")
        return Leftover(pid, "gateway", _option(cmdline, "--id") or "?")
    if not _is_cli(cmdline) or not any(c in cmdline for c in _CONTROLLER_COMMANDS):
        return None
    state_dir = Path(_option(cmdline, "--state-dir") or _DEFAULT_STATE_DIR)
    if not state_dir.is_absolute():
        if cwd is None:
            return None
        state_dir = Path(cwd) / state_dir
    return Leftover(pid, "controller", "") if os.path.normpath(state_dir) == str(dirs[0]) else None


def socket_dirs(state_dir: Path) -> list[Path]:
    dirs = [state_dir / "sock"]
    with contextlib.suppress(OSError):
        recorded = (state_dir / SOCKET_DIR_RECORD).read_text().strip()
        if recorded:
            dirs.append(Path(recorded))
    return dirs


def adoptable(cmdline: Sequence[str], kind: str, endpoint: str, socket_dir: Path, routes_path: Path) -> bool:
    """Whether a process recorded in this state directory's DB is the one the record means.

    A pid and a module name are not enough: a state DB restored from another instance names
    that instance's processes, and a pid may have been recycled. A replica's or gateway's own
    command line names its endpoint, which lies in this instance's private socket directory;
    a gateway's also names this instance's routing table.
    """
    module, flag = (REPLICA_MODULE, "--endpoint") if kind == "replica" else (GATEWAY_MODULE, "--admin-endpoint")
    if module not in cmdline or _option(cmdline, flag) != endpoint:
        return False
    scheme, _, path = endpoint.partition(":")
    if scheme != "unix" or Path(path).parent != socket_dir:
        return False
    return kind == "replica" or _option(cmdline, "--routes") == str(routes_path)


def is_recorded_process(pid: int, kind: str, endpoint: str, socket_dir: Path, routes_path: Path) -> bool:
    """``adoptable``, and run by this user: anyone can give a process any command line."""
    try:
        proc = psutil.Process(pid)
        if proc.uids().effective != os.geteuid():
            return False
        return adoptable(proc.cmdline(), kind, endpoint, socket_dir, routes_path)
    except psutil.Error:
        return False


def is_controller_of(pid: int, state_dir: Path) -> bool:
    """Whether ``pid`` is a `steady serve`/`steady up` working from ``state_dir``."""
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        cwd = proc.cwd() if _is_cli(cmdline) else None
    except psutil.Error:
        return False
    found = classify(pid, cmdline, cwd, [state_dir.resolve()])
    return found is not None and found.kind == "controller"


def running_from(state_dir: Path) -> list[Leftover]:
    """Controllers, gateways and replicas (other than this process) working from ``state_dir``."""
    resolved = state_dir.resolve()
    dirs = [resolved, *socket_dirs(resolved)]
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] == os.getpid() or not proc.info["cmdline"]:
            continue
        cwd = None
        if _is_cli(proc.info["cmdline"]):
            with contextlib.suppress(psutil.Error):
                cwd = proc.cwd()  # only a controller's relative --state-dir needs it
        leftover = classify(proc.info["pid"], proc.info["cmdline"], cwd, dirs)
        if leftover is not None:
            found.append(leftover)
    order = {"controller": 0, "gateway": 1, "replica": 2}
    return sorted(found, key=lambda f: (order[f.kind], f.name, f.pid))
