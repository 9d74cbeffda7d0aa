"""The threads that run a replica's sync handlers, and what each is doing.

A handler that never returns cannot be stopped from outside its thread, so the
pool remembers when each running call started: a call past its timeout is
*overdue* (its caller already got 504), and one still running
``stuck_grace_s`` later makes the worker *stuck*, which the replica reports so
that the controller replaces it.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..errors import DeadlineExceeded
from ..types import Clock

T = TypeVar("T")


class Startable(Protocol):
    started: bool  # set from the worker thread as the call begins


class NeverStarted(asyncio.CancelledError):
    """A cancelled call that was still waiting for a worker: nothing of it ran."""


@dataclass(frozen=True)
class RunningCall:
    handler: str
    started: float  # monotonic


class WorkerPool:
    def __init__(self, workers: int, clock: Clock = time.monotonic) -> None:
        self.size = workers
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="handler")
        self._clock = clock
        self._running: dict[int, RunningCall] = {}  # by thread id: one call per thread at a time

    async def run(self, handler: str, fn: Callable[[], T], deadline: float | None = None,
                  marker: Startable | None = None) -> T:
        """Run ``fn`` on a worker. It never starts if the deadline passes while it waits for
        a worker, or if this coroutine is cancelled first (the caller went away or timed out):
        then ``NeverStarted`` is raised from the cancellation, so the caller can say so."""
        context = contextvars.copy_context()  # the handler sees the call's context (e.g. its caller)
        job = self.executor.submit(context.run, self._call, handler, fn, deadline, marker)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if job.cancel():  # still queued: it will never run
                raise NeverStarted(f"no worker became free for handler {handler!r}") from None
            raise

    def _call(self, handler: str, fn: Callable[[], T], deadline: float | None, marker: Startable | None) -> T:
        started = self._clock()
        if deadline is not None and started >= deadline:
            raise DeadlineExceeded(f"the call's deadline passed while it waited for a worker (handler {handler!r})")
        if marker is not None:
            marker.started = True
        thread = threading.get_ident()
        self._running[thread] = RunningCall(handler, started)  # one item: atomic under the GIL
        try:
            return fn()
        finally:
            del self._running[thread]

    def running(self) -> list[RunningCall]:
        return list(self._running.values())  # copied in one C call: no lock needed

    def overdue(self, now: float, after_s: float) -> list[RunningCall]:
        """Calls running for longer than ``after_s``, oldest first."""
        return sorted((c for c in self.running() if now - c.started > after_s), key=lambda c: c.started)

    def describe(self, call: RunningCall, now: float) -> str:
        return f"a worker has been running handler {call.handler!r} for {now - call.started:.1f}s"

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def stats(self, now: float) -> dict[str, Any]:
        running = self.running()
        return {"workers": self.size, "busy_workers": len(running),
                "oldest_call_s": round(max((now - c.started for c in running), default=0.0), 3)}
