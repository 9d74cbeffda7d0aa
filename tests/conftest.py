"""Shared helpers: start `steady serve` for real, drive load, wait on conditions."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
STEADY = [sys.executable, "-m", "steadyserve.cli"]


def pytest_configure(config: pytest.Config) -> None:
    """Everything the tests and their instances put in the temp dir goes in one directory that is
    removed at the end: a killed controller's socket directory is never left behind in /tmp."""
    import tempfile

    config._steady_tmp = tempfile.mkdtemp(prefix="steady-tests-")  # type: ignore[attr-defined]
    os.environ["TMPDIR"] = config._steady_tmp  # type: ignore[attr-defined]
    tempfile.tempdir = None  # re-read TMPDIR


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    tmp = getattr(config, "_steady_tmp", None)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last_error = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_error})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def run_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STEADY, *args], capture_output=True, text=True, timeout=timeout_s)


@dataclass
class Instance:
    """One running `steady serve`, observed through the same CLI an operator uses."""

    proc: subprocess.Popen[str]
    port: int
    state_dir: Path
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A `steady` command against this instance."""
        return run_cli(*args, "--state-dir", str(self.state_dir))

    def status(self) -> list[dict[str, Any]]:
        result = run_cli("status", "--json", "--state-dir", str(self.state_dir))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        args = ["events", "--json", "--limit", "1000", "--state-dir", str(self.state_dir)]
        if type:
            args += ["--type", type]
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def process(self, kind: str, id: str) -> dict[str, Any]:
        return next(r for r in self.status() if r["kind"] == kind and r["id"] == id)

    def all_ready(self) -> bool:
        """Every process ready, and every gateway serving the latest routing table."""
        rows = self.status()
        routes_version = json.loads((self.state_dir / "routes.json").read_text())["version"]
        return bool(rows) and all(
            r["state"] == "ready" and (r["kind"] != "gateway" or r["routes_version"] == routes_version)
            for r in rows
        )

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {"content-type": "application/json"})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def post_json(self, path: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        status, hdrs, body = self.request("POST", path, json.dumps(payload).encode(), headers)
        return status, hdrs, json.loads(body)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A control API call over the instance's private Unix socket, as the CLI makes it."""
        with httpx.Client(transport=httpx.HTTPTransport(uds=self.meta()["api_socket"]), timeout=60) as client:
            return client.request(method, f"http://steady{path}", **kwargs)

    def meta(self) -> dict[str, str]:
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.state_dir / "state.db")) as db:
            return dict(db.execute("SELECT key, value FROM meta"))


def _drain_output(inst: Instance) -> None:
    assert inst.proc.stdout is not None
    for line in inst.proc.stdout:
        inst.output.append(line)


def start_instance(target: Path | str, state_dir: Path, *args: str, wait_ready: bool = True,
                   command: str = "serve", port: int | None = None) -> Instance:
    """`steady serve TARGET ...`, or with command="up", `steady up -f TARGET ...`."""
    port = port or free_port()
    what = [str(target)] if command == "serve" else ["-f", str(target)]
    if command == "up" and "--auth" not in args:
        what.append("--no-auth")  # tests of access control pass --auth to keep it on
    args = tuple(a for a in args if not (command == "up" and a == "--auth"))
    proc = subprocess.Popen(
        [*STEADY, command, *what, "--port", str(port), "--api-port", "0", "--state-dir", str(state_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    inst = Instance(proc, port, state_dir)
    threading.Thread(target=_drain_output, args=(inst,), daemon=True).start()
    if wait_ready:
        # This controller's own view: rows a killed predecessor left in the state DB do not count.
        wait_for(lambda: proc.poll() is None and (state_dir / "state.db").exists()
                 and inst.meta().get("controller_pid") == str(proc.pid) and inst.all_ready(),
                 90, f"{target} to be ready; output so far:\n{''.join(inst.output)}")
    return inst


def stop_instance(inst: Instance) -> int:
    if inst.proc.poll() is None:
        inst.proc.send_signal(signal.SIGINT)
        try:
            return inst.proc.wait(60)
        except subprocess.TimeoutExpired:
            inst.proc.kill()
            raise
    return inst.proc.returncode


def stop_with_children(inst: Instance) -> None:
    """Stop an instance, then SIGKILL any of its processes a test left behind (a module fixture's teardown)."""
    pids = []
    try:
        pids = [r["pid"] for r in inst.status() if r["pid"]]
    except Exception:  # noqa: BLE001 - best effort cleanup
        pass
    stop_instance(inst)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Instance]]:
    """Start `steady serve TARGET ARGS...`; everything it started is stopped afterwards."""
    started: list[Instance] = []

    def _start(target: Path | str, *args: str, wait_ready: bool = True, command: str = "serve") -> Instance:
        inst = start_instance(target, tmp_path / f"state{len(started)}", *args, wait_ready=wait_ready,
                              command=command)
        started.append(inst)
        return inst

    yield _start
    for inst in started:
        stop_with_children(inst)


class LoadStream:
    """Threads sending a steady stream of requests; every outcome is counted.

    Plain keep-alive HTTP connections, no retries: any failure counts. With
    ``use_sdk``, each thread calls through ``steadyserve.Client`` instead, which
    retries idempotent calls as its users get it to; used only where the test
    kills the gateway process the client is connected to (that process's
    in-flight and accept-queued connections are lost with it).
    """

    def __init__(self, port: int, path: str, payload: dict[str, Any], threads: int = 4,
                 use_sdk: bool = False) -> None:
        self.port, self.path, self.body = port, path, json.dumps(payload).encode()
        self.payload = payload
        self.use_sdk = use_sdk
        self.ok = 0
        self.failures: list[str] = []
        self.replicas_seen: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> LoadStream:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)

    def _send(self, conn: http.client.HTTPConnection) -> tuple[int, str, bytes]:
        conn.request("POST", self.path, body=self.body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("x-steady-replica") or "", resp.read()

    def _run(self) -> None:
        if self.use_sdk:
            self._run_sdk()
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self._stop.is_set():
            try:
                status, replica, body = self._send(conn)
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self._fail(f"{type(exc).__name__}: {exc}")
                continue
            if status == 200:
                with self._lock:
                    self.ok += 1
                    self.replicas_seen.add(replica)
            else:
                self._fail(f"HTTP {status}: {body[:300]!r}")
        conn.close()

    def _run_sdk(self) -> None:
        from steadyserve import Client, SteadyError

        deployment, _, handler = self.path.strip("/").rpartition("/")
        assert deployment, "with use_sdk, path is /<deployment>/<handler>"
        with Client(f"http://127.0.0.1:{self.port}") as client:
            while not self._stop.is_set():
                try:
                    client.request(deployment, handler, self.payload)
                except SteadyError as exc:
                    self._fail(f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    self.ok += 1

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures.append(what)
