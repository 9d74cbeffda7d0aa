"""The default backend: each replica a process on this machine, on a Unix socket only this user can reach."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import orphans
from ..launch import REPLICA_MODULE
from ..leftovers import is_recorded_process
from ..processes import AdoptedProcess, Launcher, ProcessHandle, pid_alive
from ..secrets import SECRETS_DIR_VAR, write_secret_files
from ..spec import ResourceLimits
from . import ReplicaLaunch

MAX_REPORTED_BYTES = 1 << 20  # of a replica's error file (a 3 MB exception stays in its log)


class LocalReplica:
    """A replica process; what it leaves behind (socket, secret files, forked children) goes with it."""

    node = None
    credential = None

    def __init__(self, proc: ProcessHandle, endpoint: str, error_file: Path, secrets_dir: Path) -> None:
        self._proc = proc
        self._endpoint = endpoint
        self._error_file = error_file
        self._secrets_dir = secrets_dir

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def endpoint(self) -> str | None:
        return self._endpoint

    def poll(self) -> int | None:
        return self._proc.poll()

    def signal(self, sig: int) -> None:
        self._proc.signal(sig)

    def kill(self) -> None:
        self._proc.kill()

    def stop_leftovers(self) -> None:
        self._proc.stop_leftovers()

    def wait(self, timeout_s: float) -> int | None:
        return self._proc.wait(timeout_s)

    def resident_bytes(self) -> int | None:
        return self._proc.resident_bytes()

    def fatal_error(self) -> str | None:
        return read_error_file(self._error_file)

    def sync(self) -> None:
        pass

    def forget(self) -> None:
        shutil.rmtree(self._secrets_dir, ignore_errors=True)
        self._proc.stop_leftovers()  # children a replica forked must not outlive it
        Path(self._endpoint.partition(":")[2]).unlink(missing_ok=True)


def read_error_file(path: Path) -> str | None:
    """What a replica wrote before it died: ``{"error": ...}`` (read at most MAX_REPORTED_BYTES)."""
    try:
        with open(path, "rb") as f:
            return str(json.loads(f.read(MAX_REPORTED_BYTES))["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class LocalBackend:
    kind = "local"

    def __init__(self, launcher: Launcher, socket_dir: Path, logs_dir: Path, metrics_dir: Path,
                 routes_path: Path) -> None:
        self.launcher = launcher
        self.socket_dir = socket_dir
        self.logs_dir = logs_dir
        self.metrics_dir = metrics_dir
        self.routes_path = routes_path

    def _paths(self, label: str) -> tuple[Path, Path]:
        return self.socket_dir / f"{label}.error", self.socket_dir / f"secrets-{label}"

    def start(self, launch: ReplicaLaunch) -> LocalReplica:
        label = launch.label
        endpoint = f"unix:{self.socket_dir / f'{label}-{launch.generation}.sock'}"
        error_file, secrets_dir = self._paths(label)
        error_file.unlink(missing_ok=True)
        env = dict(launch.env)
        if launch.secret_files:
            write_secret_files(secrets_dir, launch.secret_files)
            env[SECRETS_DIR_VAR] = str(secrets_dir)
        # Inherited by whatever it starts: see orphans.py.
        env[orphans.REPLICA_MARK] = orphans.replica_mark(launch.deployment, launch.replica_id, launch.generation)
        args = [*launch.args, "--endpoint", endpoint, "--error-file", str(error_file),
                "--metrics-dir", str(self.metrics_dir)]
        proc = self.launcher.start_module(REPLICA_MODULE, args, self.logs_dir / f"{label}.log", env)
        return LocalReplica(proc, endpoint, error_file, secrets_dir)

    def placement_problem(self, deployment: str, revision: int, resources: ResourceLimits) -> str | None:
        return None  # this machine's budget is the autoscaler's (capacity.py), before a slot exists

    def adopt(self, row: Mapping[str, Any], resources: ResourceLimits) -> LocalReplica | None:
        pid, endpoint = row["pid"], row["endpoint"]
        if not pid or not endpoint or not pid_alive(pid) or not is_recorded_process(
                pid, "replica", endpoint, self.socket_dir, self.routes_path):
            return None
        error_file, secrets_dir = self._paths(f"{row['deployment']}-{row['id']}")
        return LocalReplica(AdoptedProcess(pid), endpoint, error_file, secrets_dir)

    def release_others(self, keep: set[str]) -> None:
        pass  # leftover local processes are the orphan collector's (orphans.py)

    def close(self) -> None:
        pass
