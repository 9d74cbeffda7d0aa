"""The one wrapper around the child that imports a service for the controller.

``ChildDescriber.describe`` runs ``python -m steadyserve.control.introspect`` in
a session of its own, with the caller's environment, a deadline and optional
memory caps, reads its JSON answer from a dedicated pipe, and kills the
child's process group afterwards (whatever the import left running goes too).
Every failure is a ``ServiceLoadError`` whose message is the child's (with
``file:line`` where there is one), or says how the child ended: a timeout, an
exit code, a signal, too much memory, with the last lines it wrote to stderr.
A unit test passes a fake ``Describer``.

The service module runs in the child and can write an answer of its own, so
nothing in it is trusted unchecked: at most ``MAX_RESULT_BYTES`` are read, the
answer must echo the requested target, describe that file (and class, if one
was named) and pass ``DescribeAnswer`` strictly (no unknown keys, no coerced
types, route-safe handler names, bounded batch sizes); the child's error text
is cut short and stripped of control characters before anyone prints it.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from ..description import DescribeAnswer, ServiceDescription, problems, shown
from ..errors import ServiceLoadError
from ..loading import ServiceTarget
from ..printable import printable
from .processes import kill_group, resident_bytes, spawn

INTROSPECT_MODULE = "steadyserve.control.introspect"
MAX_RESULT_BYTES = 1024 * 1024  # a description is kilobytes; no more than one byte past this is read
_MAX_ERROR_CHARS = 8 * 1024
_MAX_PROBLEMS = 5
_STDERR_TAIL_BYTES = 8 * 1024
_TAIL_LINES = 5
_CHUNK_BYTES = 64 * 1024
_TICK_S = 0.05  # how often limits are checked while the child is quiet


@dataclass(frozen=True)
class DescribeRequest:
    target: ServiceTarget
    env: Mapping[str, str]  # the child's whole environment
    timeout_s: float
    address_space_mb: int | None = None  # RLIMIT_AS in the child
    memory_mb: int | None = None  # resident memory of the child's processes, watched by the parent


class Describer(Protocol):
    def describe(self, request: DescribeRequest) -> ServiceDescription: ...

    def cancel(self) -> None:
        """End every describe under way now (each raises ServiceLoadError): the caller was interrupted."""
        ...


# --- pure: what the child's outcome means ----------------------------------------------------
def last_lines(stderr: bytes | bytearray, count: int = _TAIL_LINES) -> str:
    lines = [line.rstrip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return "\n".join(f"  {line}" for line in lines[-count:])


def _with_output(message: str, stderr: bytes | bytearray) -> str:
    tail = last_lines(stderr)
    return f"{message}; its last output:\n{tail}" if tail else message


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


def outcome(target: ServiceTarget, returncode: int, result: bytes, stderr: bytes) -> ServiceDescription:
    """The description in ``result``, or the ServiceLoadError that explains why there is none."""
    if not result:
        raise ServiceLoadError(_with_output(
            f"importing {target.file} {how_it_ended(returncode)} before describing the service", stderr))
    if len(result) > MAX_RESULT_BYTES:
        raise _too_big(target)
    try:
        answer = DescribeAnswer.model_validate_json(result, strict=True)
    except ValidationError as exc:
        kinds = {err["type"] for err in exc.errors()}
        if kinds & {"json_invalid", "model_type"}:  # written over, or cut short, by the service itself?
            raise ServiceLoadError(_with_output(
                f"importing {target.file} gave an unreadable description (not a JSON object)", stderr)) from exc
        raise invalid_description(target, problems(exc)) from exc
    if answer.target != str(target):
        raise invalid_description(target, [f"it answers for {shown(answer.target)}, not for the target requested"])
    description = answer.description
    if description is None:  # then it holds the error
        raise ServiceLoadError(printable(answer.error or "", _MAX_ERROR_CHARS, keep="\n\t"))
    wrong = []
    if description.file != target.file:
        wrong.append(f"it describes the file {shown(str(description.file))}")
    if target.class_name is not None and description.class_name != target.class_name:
        wrong.append(f"it describes the class {shown(description.class_name)}")
    if wrong:
        raise invalid_description(target, wrong)
    return description


def invalid_description(target: ServiceTarget, found: list[str]) -> ServiceLoadError:
    more = f"; and {len(found) - _MAX_PROBLEMS} more" if len(found) > _MAX_PROBLEMS else ""
    return ServiceLoadError(
        f"service description from {target} is invalid: {'; '.join(found[:_MAX_PROBLEMS])}{more}"
        " (the child that imports the service wrote this: does the module write to file descriptors"
        " it does not own?)")


def _too_big(target: ServiceTarget) -> ServiceLoadError:
    return ServiceLoadError(f"importing {target.file} wrote more than {MAX_RESULT_BYTES // 1024} KiB of"
                            " service description; a real one is a few KiB: does the module write to"
                            " file descriptors it does not own?")


# --- the child process --------------------------------------------------------------------
class _Outputs:
    """The child's result pipe and stderr pipe, read without blocking; stderr keeps only its tail and
    the result is read to one byte past ``MAX_RESULT_BYTES`` at most (the rest stays in the pipe)."""

    def __init__(self, result_fd: int, stderr_fd: int) -> None:
        self.result, self.stderr = bytearray(), bytearray()
        self._result_fd = result_fd
        self._buffers = {result_fd: self.result, stderr_fd: self.stderr}
        self._open = set(self._buffers)
        self._selector = selectors.DefaultSelector()
        for fd in self._buffers:
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ)

    @property
    def open(self) -> bool:
        return bool(self._open)

    @property
    def result_too_big(self) -> bool:
        return len(self.result) > MAX_RESULT_BYTES

    def read(self, timeout_s: float) -> None:
        for key, _ in self._selector.select(timeout_s):
            self._read_chunk(key.fd)

    def drain(self) -> None:
        """What is left in the pipes; bounded, as a process that escaped the kill may still write."""
        for fd in list(self._open):
            for _ in range(MAX_RESULT_BYTES // _CHUNK_BYTES + 2):
                if not self._read_chunk(fd):
                    break

    def _read_chunk(self, fd: int) -> bool:
        """One read; False once nothing more is there for now, or nothing more is wanted."""
        size = _CHUNK_BYTES
        if fd == self._result_fd:
            size = min(size, MAX_RESULT_BYTES + 1 - len(self.result))
            if size <= 0:
                self._stop(fd)
                return False
        try:
            chunk = os.read(fd, size)
        except BlockingIOError:
            return False
        if not chunk:
            self._stop(fd)
            return False
        buffer = self._buffers[fd]
        buffer += chunk
        if buffer is self.stderr and len(buffer) > _STDERR_TAIL_BYTES:
            del buffer[:-_STDERR_TAIL_BYTES]
        return True

    def _stop(self, fd: int) -> None:
        self._selector.unregister(fd)
        self._open.discard(fd)

    def close(self) -> None:
        self._selector.close()
        for fd in self._buffers:
            os.close(fd)


class ChildDescriber:
    """Imports each service in a child of its own; nothing it does reaches this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[int] = set()  # pids of children under way (describe may run in several threads)

    def cancel(self) -> None:
        with self._lock:
            for pid in self._running:
                kill_group(pid)

    def describe(self, request: DescribeRequest) -> ServiceDescription:
        result_r, result_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        try:
            popen = self._start(request, result_w, stderr_w)
        except OSError as exc:
            os.close(result_r)
            os.close(stderr_r)
            raise ServiceLoadError(f"cannot start a process to import {request.target.file}: {exc}") from exc
        finally:
            os.close(result_w)
            os.close(stderr_w)
        outputs = _Outputs(result_r, stderr_r)
        with self._lock:
            self._running.add(popen.pid)
        try:
            try:
                returncode = self._wait(popen, outputs, request)
            finally:
                with self._lock:
                    self._running.discard(popen.pid)
                    kill_group(popen.pid)  # whatever the import started, and the child if it overran
                popen.wait()
            outputs.drain()  # what it wrote just before it exited
            return outcome(request.target, returncode, bytes(outputs.result), bytes(outputs.stderr))
        finally:
            outputs.close()

    @staticmethod
    def _start(request: DescribeRequest, result_w: int, stderr_w: int) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", INTROSPECT_MODULE, "--target", str(request.target),
                "--result-fd", str(result_w)]
        if request.address_space_mb is not None:
            args += ["--address-space-mb", str(request.address_space_mb)]
        return spawn(  # recorded: not mistaken for an orphan (orphans.py)
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_w,
            env=dict(request.env), pass_fds=(result_w,),
            start_new_session=True,  # its own process group: one killpg ends all it started
        )

    @staticmethod
    def _wait(popen: subprocess.Popen[bytes], outputs: _Outputs, request: DescribeRequest) -> int:
        """The child's exit status once it ended; ServiceLoadError if it overran a limit."""
        file = request.target.file
        deadline = time.monotonic() + request.timeout_s
        while (returncode := popen.poll()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceLoadError(_with_output(
                    f"importing {file} did not finish within {request.timeout_s:g} s", outputs.stderr))
            if request.memory_mb is not None and (resident_bytes(popen.pid) or 0) > request.memory_mb << 20:
                raise ServiceLoadError(_with_output(
                    f"importing {file} used more than resources.memory_mb ({request.memory_mb} MB)",
                    outputs.stderr))
            if outputs.result_too_big:
                raise _too_big(request.target)
            if outputs.open:
                outputs.read(min(remaining, _TICK_S))
            else:
                try:  # both pipes closed: only the exit is left to wait for
                    popen.wait(min(remaining, _TICK_S))
                except subprocess.TimeoutExpired:
                    pass
        return returncode
