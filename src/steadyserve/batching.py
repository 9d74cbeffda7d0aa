"""Dynamic batching: concurrent calls to one handler are grouped into one call.

``decide_flush`` is the pure policy; ``Batcher`` is the thin asyncio loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .service import Batch
from .types import Clock


@dataclass(frozen=True)
class FlushNow:
    count: int


@dataclass(frozen=True)
class WaitUntil:
    deadline: float


LONELY_BATCHES = 3  # batches of one in a row after which waiting for company stops


def decide_flush(queued: int, oldest_enqueued_at: float, now: float, batch: Batch,
                 lonely_batches: int = 0) -> FlushNow | WaitUntil:
    """Flush when the batch is full or the oldest call has waited ``max_wait_ms``.

    When the last few batches held a single call, nobody else is calling: waiting
    would only add latency, so flush at once. The first batch of two or more
    calls turns waiting back on (``lonely_batches`` resets to 0).
    """
    if queued >= batch.max_size:
        return FlushNow(batch.max_size)
    if lonely_batches >= LONELY_BATCHES:
        return FlushNow(queued)
    deadline = oldest_enqueued_at + batch.max_wait_ms / 1000.0
    if now >= deadline:
        return FlushNow(queued)
    return WaitUntil(deadline)


class BatchOutputMismatch(Exception):
    """The batched handler broke its contract (not a list, or wrong length)."""


def split_outputs(outputs: Any, batch_size: int, handler_name: str) -> Sequence[Any]:
    """Check a batched handler's return value: one output per input, in order."""
    if not isinstance(outputs, (list, tuple)):
        raise BatchOutputMismatch(
            f"batched handler {handler_name!r} must return a list, got {type(outputs).__name__}"
        )
    if len(outputs) != batch_size:
        raise BatchOutputMismatch(
            f"batched handler {handler_name!r} returned {len(outputs)} outputs"
            f" for a batch of {batch_size} inputs"
        )
    return outputs


@dataclass
class PendingCall:
    inputs: dict[str, Any]
    enqueued_at: float
    future: asyncio.Future[Any] = field(repr=False)


# Runs the user's function on a list-per-parameter dict; returns the outputs.
BatchRunner = Callable[[dict[str, list[Any]]], Awaitable[Any]]


class Batcher:
    """Queue of pending calls for one batched handler, flushed by ``decide_flush``."""

    def __init__(
        self,
        name: str,
        batch: Batch,
        params: Sequence[str],
        run_batch: BatchRunner,
        on_batch: Callable[[int], None] = lambda size: None,
        translate_error: Callable[[Exception], Exception] = lambda exc: exc,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.batch = batch
        self._params = tuple(params)
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._translate_error = translate_error
        self._clock = clock
        self._queue: deque[PendingCall] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lonely_batches = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, inputs: dict[str, Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(PendingCall(inputs, self._clock(), future))
        self._wakeup.set()
        return await future

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            decision = decide_flush(len(self._queue), self._queue[0].enqueued_at, self._clock(), self.batch,
                                    self._lonely_batches)
            if isinstance(decision, WaitUntil):
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), decision.deadline - self._clock())
                except TimeoutError:
                    pass
                continue
            calls = [self._queue.popleft() for _ in range(decision.count)]
            calls = [c for c in calls if not c.future.done()]  # callers that gave up
            if calls:
                await self._execute(calls)

    async def _execute(self, calls: list[PendingCall]) -> None:
        columns = {p: [c.inputs[p] for c in calls] for p in self._params}
        self._on_batch(len(calls))
        self._lonely_batches = self._lonely_batches + 1 if len(calls) == 1 else 0
        try:
            outputs = split_outputs(await self._run_batch(columns), len(calls), self.name)
        except Exception as exc:  # every caller of the batch must hear about it, once logged
            delivered = self._translate_error(exc)
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(delivered)
            return
        for call, output in zip(calls, outputs, strict=True):
            if not call.future.done():
                call.future.set_result(output)
