"""Dynamic batching: concurrent calls to one handler are grouped into one call.

``decide_flush`` is the pure policy; ``Batcher`` is the thin asyncio loop that
takes a ``QueueSnapshot`` each time it looks and applies the decision.

The policy never keeps a free handler waiting for company that is not on its
way, so batching costs throughput nothing at low concurrency and grows batches
as load grows. Waiting is free while a batch runs (one batch at a time per
handler): calls queue meanwhile and go together into the next batch, flushed
as soon as the handler is free. A free handler waits only while the queue is
still growing from one event-loop turn to the next (a burst read from many
sockets is submitted over a turn or two), the batch is not full and the oldest
call has waited less than ``max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import DeadlineExceeded
from .service import Batch
from .types import Clock

LONELY_BATCHES = 3  # batches of one in a row after which a lone call stops waiting a turn for company

FlushReason = Literal["full", "max_wait", "stopped_growing", "lonely"]


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """What the batcher sees when the handler is free and at least one call is queued."""

    queued: int  # calls waiting, including any whose caller has gone (dropped at flush)
    oldest_enqueued_at: float  # monotonic seconds
    now: float  # monotonic seconds
    grew: bool  # calls were queued since the batcher's previous look (a loop turn ago, or the end of a batch)
    lonely_batches: int = 0  # batches of exactly one call in a row, most recent last


@dataclass(frozen=True, slots=True)
class FlushNow:
    count: int
    reason: FlushReason


@dataclass(frozen=True, slots=True)
class WaitTurn:
    """Yield one event-loop turn, then look again: calls are still arriving."""


WAIT_TURN = WaitTurn()


def decide_flush(snapshot: QueueSnapshot, batch: Batch) -> FlushNow | WaitTurn:
    """Flush when full, when the oldest call has waited ``max_wait_ms``, or when waiting cannot help.

    Waiting can help only while the queue is still growing: a call that arrived
    in the last turn suggests more are being read from their sockets right now.
    After several batches of one (a lone caller), even that turn is not spent.
    """
    if snapshot.queued >= batch.max_size:
        return FlushNow(batch.max_size, "full")
    if (snapshot.now - snapshot.oldest_enqueued_at) * 1000.0 >= batch.max_wait_ms:
        return FlushNow(snapshot.queued, "max_wait")
    if not snapshot.grew:
        return FlushNow(snapshot.queued, "stopped_growing")
    if snapshot.queued == 1 and snapshot.lonely_batches >= LONELY_BATCHES:
        return FlushNow(1, "lonely")
    return WAIT_TURN


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


@dataclass(slots=True)
class PendingCall:
    inputs: dict[str, Any]
    enqueued_at: float
    future: asyncio.Future[Any] = field(repr=False)
    deadline: float | None = None  # monotonic seconds, the batcher's clock
    # The futures of every call of its array request (``submit_many``); empty for a lone call.
    array: Sequence[asyncio.Future[Any]] = field(default=(), repr=False)


# Runs the user's function on a list-per-parameter dict; returns the outputs.
BatchRunner = Callable[[dict[str, list[Any]]], Awaitable[Any]]


class Batcher:
    """Queue of pending calls for one batched handler, flushed by ``decide_flush``; one batch at a time."""

    def __init__(
        self,
        name: str,
        batch: Batch,
        params: Sequence[str],
        run_batch: BatchRunner,
        on_batch: Callable[[int], None] = lambda size: None,
        translate_error: Callable[[Exception], Exception] = lambda exc: exc,
        clock: Clock = time.monotonic,
        batch_timeout_s: float | None = None,
    ) -> None:
        self.name = name
        # A batch still running after this is given up, so one hung batch cannot stall the handler for good.
        self._batch_timeout_s = batch_timeout_s
        self.batch = batch
        self._params = tuple(params)
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._translate_error = translate_error
        self._clock = clock
        self._queue: deque[PendingCall] = deque()
        self._wakeup = asyncio.Event()  # a call was queued, or the handler became free
        self._busy = False  # a batch is running
        self._lonely_batches = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, inputs: dict[str, Any], deadline: float | None = None) -> Any:
        """The handler's output for ``inputs``.

        Raises ``DeadlineExceeded`` if ``deadline`` (monotonic seconds, the
        batcher's clock) has passed when the call would be put into a batch.
        """
        now = self._clock()
        if not self._busy and not self._queue:
            decision = decide_flush(QueueSnapshot(1, now, now, True, self._lonely_batches), self.batch)
            if isinstance(decision, FlushNow):
                return await self._run_alone(inputs, now, deadline)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(PendingCall(inputs, now, future, deadline))
        self._wakeup.set()
        return await future

    async def submit_many(self, calls: Sequence[dict[str, Any]], deadline: float | None = None) -> list[Any]:
        """The handler's outputs for ``calls`` (one request's array), in order.

        The calls join the queue together, each as one call: they share batches with
        everyone else's, and an array longer than ``max_size`` spans batches. All or
        nothing: once one fails, or the caller goes away, those of the others not yet in
        a running batch never reach the handler.
        """
        if not calls:
            return []
        now = self._clock()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in calls]
        pending = [PendingCall(inputs, now, future, deadline, futures)
                   for inputs, future in zip(calls, futures, strict=True)]
        self._queue.extend(pending)  # at once: the batcher never sees a part of the array
        self._wakeup.set()
        try:
            return [await call.future for call in pending]
        finally:
            for call in pending:
                if not call.future.cancel() and not call.future.cancelled():
                    call.future.exception()  # its batch-mate's failure is the one reported

    async def _run_alone(self, inputs: dict[str, Any], now: float, deadline: float | None) -> Any:
        """A lone caller runs its batch of one in its own task: waking the batcher would cost a loop turn.

        If this caller is cancelled meanwhile, only its own call is abandoned.
        """
        if deadline is not None and deadline <= now:
            raise DeadlineExceeded("deadline passed before the call was batched")
        self._lonely_batches += 1
        self._on_batch(1)
        self._busy = True
        try:
            outputs = await self._run_batch({p: [inputs[p]] for p in self._params})
            return split_outputs(outputs, 1, self.name)[0]
        except Exception as exc:  # the same error a caller in a bigger batch would get
            delivered = self._translate_error(exc)
            if delivered is exc:
                raise
            raise delivered from exc
        finally:
            self._busy = False
            if self._queue:
                self._wakeup.set()

    async def _loop(self) -> None:
        queue = self._queue
        seen = 0  # queue length at the previous look
        while True:
            if not queue or self._busy:  # nothing to do, or waiting is free: calls queue meanwhile
                seen = len(queue)
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            snapshot = QueueSnapshot(len(queue), queue[0].enqueued_at, self._clock(), len(queue) > seen,
                                     self._lonely_batches)
            decision = decide_flush(snapshot, self.batch)
            if isinstance(decision, WaitTurn):
                seen = len(queue)
                await asyncio.sleep(0)
                continue
            await self._flush(decision.count, snapshot.now)
            # Calls queued while the batch ran were waiting for the handler, not still
            # arriving: counting them as seen makes the next look flush them at once.
            seen = len(queue)

    async def _flush(self, count: int, now: float) -> None:
        calls = self._take(count, now)
        if not calls:
            return
        self._lonely_batches = self._lonely_batches + 1 if len(calls) == 1 else 0
        self._busy = True
        try:
            await self._execute(calls)
        finally:
            self._busy = False
            if self._queue:
                self._wakeup.set()

    def _take(self, count: int, now: float) -> list[PendingCall]:
        """Up to ``count`` live calls from the head of the queue; the dead ones never reach the handler."""
        calls: list[PendingCall] = []
        while self._queue and len(calls) < count:
            call = self._queue.popleft()
            if call.future.done():  # the caller gave up
                continue
            if call.deadline is not None and call.deadline <= now:
                call.future.set_exception(DeadlineExceeded("deadline passed before the call was batched"))
                continue
            calls.append(call)
        return calls

    async def _bounded(self, run: Awaitable[Any]) -> Any:
        if self._batch_timeout_s is None:
            return await run
        try:
            return await asyncio.wait_for(run, self._batch_timeout_s)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"batched handler {self.name!r} did not return within"
                                   f" {self._batch_timeout_s:g}s; the batch was given up", started=True) from exc

    async def _execute(self, calls: list[PendingCall]) -> None:
        columns = {p: [c.inputs[p] for c in calls] for p in self._params}
        self._on_batch(len(calls))
        try:
            outputs = split_outputs(await self._bounded(self._run_batch(columns)), len(calls), self.name)
        except DeadlineExceeded as exc:
            _fail(calls, exc)
            return
        except Exception as exc:  # every caller of the batch must hear about it, once logged
            _fail(calls, self._translate_error(exc))
            return
        for call, output in zip(calls, outputs, strict=True):
            if not call.future.done():
                call.future.set_result(output)


def _fail(calls: list[PendingCall], exc: Exception) -> None:
    """Fail a batch's calls, and with them the other calls of their array requests.

    At once, not when the array's caller next runs: by then the batcher could have put
    the rest of the array into the next batch, and an array request is all or nothing.
    """
    for call in calls:
        for future in call.array or (call.future,):
            if not future.done():
                future.set_exception(exc)
