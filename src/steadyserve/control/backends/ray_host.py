"""The Ray actor that holds one replica's place on a node (runs there, inside Ray's worker).

Ray places the actor with the replica's resources (CPUs, GPUs, memory, custom ones); the
actor runs our unchanged replica server as its child process on that node, listening on
TCP on the node's address. Running the server as a child keeps everything a local replica
does (draining on SIGTERM, its watchdog, resource limits, its own exit status) and lets
Ray's GPU assignment reach it through the inherited environment. The child exits with the
actor (``--exit-with-parent``): a lost node or a killed actor leaves no replica behind.

The controller reads the child's log and its fatal error through this actor, so the
centralised logs work for replicas on any node.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..environment import child_base_env
from ..launch import REPLICA_MODULE
from ..processes import kill_group, pid_alive, resident_bytes
from ..secrets import SECRETS_DIR_VAR, write_secret_files
from .local import read_error_file

MAX_LOG_PULL_BYTES = 1 << 20  # per pull: a replica printing a flood is copied over several ticks
DIR_PREFIX = "steady-replica-"


def sweep_stale_dirs(tmp: Path) -> None:
    """Remove the directories of replica hosts that died without cleaning up (a killed worker): their
    logs and secret files must not stay on the node."""
    for directory in tmp.glob(DIR_PREFIX + "*"):
        try:
            if directory.is_symlink() or directory.stat().st_uid != os.geteuid():
                continue
            pid = int((directory / "host.pid").read_text())
        except (OSError, ValueError):
            continue
        if not pid_alive(pid):
            shutil.rmtree(directory, ignore_errors=True)


class ReplicaHost:
    """One replica's child process on this node, and what the controller asks of it."""

    def __init__(self) -> None:
        self._popen: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._started: dict[str, Any] = {}

    def start(self, args: list[str], env: Mapping[str, str], secret_files: Mapping[str, str]) -> dict[str, Any]:
        """Start the replica server; returns its pid, node id and host (the endpoint follows once it listens)."""
        import ray

        if self._popen is not None:  # a retried call: the replica is already up
            return self._started
        sweep_stale_dirs(Path(tempfile.gettempdir()))
        self._dir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))  # 0700: its secrets and error file
        (self._dir / "host.pid").write_text(str(os.getpid()))
        (self._dir / "metrics").mkdir()  # its own shard stays on its node: see the note in ray_cluster.py
        host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        child_env = {**child_base_env(os.environ), **env}
        if secret_files:
            write_secret_files(self._dir / "secrets", secret_files)
            child_env[SECRETS_DIR_VAR] = str(self._dir / "secrets")
        command = [sys.executable, "-m", REPLICA_MODULE, *args, "--endpoint", f"tcp:{host}:0",
                   "--endpoint-file", str(self._dir / "endpoint"), "--error-file", str(self._dir / "error.json"),
                   "--metrics-dir", str(self._dir / "metrics"), "--exit-with-parent"]
        fd = os.open(self._dir / "replica.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "ab") as log:
            self._popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           env=child_env, start_new_session=True)
        self._started = {"pid": self._popen.pid, "node": ray.get_runtime_context().get_node_id(), "host": host}
        return self._started

    def endpoint(self) -> str | None:
        try:
            return (self._dir / "endpoint").read_text() if self._dir is not None else None
        except OSError:
            return None

    def wait_exit(self) -> int:
        """Blocks until the replica exits: the controller keeps one call pending to learn of it."""
        assert self._popen is not None
        return self._popen.wait()

    def poll(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def signal(self, sig: int) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.Signals(sig))

    def kill(self) -> None:
        if self._popen is not None:
            kill_group(self._popen.pid)

    def resident_bytes(self) -> int | None:
        if self._popen is None or self._popen.poll() is not None:
            return None
        return resident_bytes(self._popen.pid)

    def pull_log(self, offset: int) -> tuple[bytes, int]:
        """Log bytes from ``offset`` (at most MAX_LOG_PULL_BYTES) and the offset after them."""
        if self._dir is None:
            return b"", offset
        try:
            with open(self._dir / "replica.log", "rb") as f:
                f.seek(offset)
                data = f.read(MAX_LOG_PULL_BYTES)
        except OSError:
            return b"", offset
        return data, offset + len(data)

    def fatal_error(self) -> str | None:
        return None if self._dir is None else read_error_file(self._dir / "error.json")

    def cleanup(self) -> None:
        """After the replica exited: its group (what it forked) and its files go."""
        if self._popen is not None:
            kill_group(self._popen.pid)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
