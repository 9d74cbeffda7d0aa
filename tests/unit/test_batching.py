"""Dynamic batching: the flush policy as a table, and the batcher with real asyncio and a fake handler.

The batcher tests never sleep on the wall clock: time is a fake clock, and
"later" means a number of event-loop turns.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from steadyserve import Batch
from steadyserve.batching import (
    LONELY_BATCHES,
    WAIT_TURN,
    Batcher,
    BatchOutputMismatch,
    FlushNow,
    QueueSnapshot,
    decide_flush,
)
from steadyserve.errors import DeadlineExceeded

BATCH = Batch(max_size=4, max_wait_ms=5)


# --- the policy -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("queued", "waited_s", "grew", "lonely", "expected"),
    [
        pytest.param(4, 0.0, True, 0, FlushNow(4, "full"), id="full, although still growing"),
        pytest.param(9, 0.0, False, 0, FlushNow(4, "full"), id="more than full: take max_size"),
        pytest.param(2, 0.001, True, 0, WAIT_TURN, id="still growing: wait a turn for the rest"),
        pytest.param(2, 0.005, True, 0, FlushNow(2, "max_wait"), id="oldest waited max_wait"),
        pytest.param(2, 0.001, False, 0, FlushNow(2, "stopped_growing"), id="stopped growing: nobody to wait for"),
        pytest.param(1, 0.0, False, 0, FlushNow(1, "stopped_growing"), id="lone call, nothing on its way"),
        pytest.param(1, 0.0, True, LONELY_BATCHES - 1, WAIT_TURN, id="just arrived: may have company"),
        pytest.param(1, 0.0, True, LONELY_BATCHES, FlushNow(1, "lonely"), id="lone caller: not even a turn"),
        pytest.param(2, 0.0, True, LONELY_BATCHES, WAIT_TURN, id="company arrived: waiting is back on"),
    ],
)
def test_decide_flush(queued, waited_s, grew, lonely, expected):
    snapshot = QueueSnapshot(queued, oldest_enqueued_at=10.0, now=10.0 + waited_s, grew=grew, lonely_batches=lonely)
    assert decide_flush(snapshot, BATCH) == expected


@pytest.mark.parametrize("queued", [1, 2, 3])
def test_zero_max_wait_never_waits(queued):
    snapshot = QueueSnapshot(queued, oldest_enqueued_at=0.0, now=0.0, grew=True)
    assert decide_flush(snapshot, Batch(max_size=4, max_wait_ms=0)) == FlushNow(queued, "max_wait")


# --- the batcher ------------------------------------------------------------------------------
async def turns_until(condition, max_turns: int = 1000) -> None:
    """Let the event loop run until ``condition()`` holds; fail if it never does."""
    for _ in range(max_turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"condition not met within {max_turns} loop turns")


class HeldHandler:
    """A fake ``run_batch``: records each batch, which finishes only when the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.running = 0
        self.most_running = 0
        self._gates: list[asyncio.Future[None]] = []

    async def __call__(self, columns: dict[str, list[Any]]) -> list[Any]:
        gate = asyncio.get_running_loop().create_future()
        self.batches.append(columns["x"])
        self._gates.append(gate)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await gate
        finally:
            self.running -= 1
        return [v * 10 for v in columns["x"]]

    def release(self, index: int) -> None:
        self._gates[index].set_result(None)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


async def _with_batcher(fn, batch, calls):
    sizes: list[int] = []

    async def run_batch(columns):
        return fn(**columns)

    batcher = Batcher("f", batch, ["x"], run_batch, on_batch=sizes.append)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit({"x": c}) for c in calls), return_exceptions=True)
    return results, sizes


def test_concurrent_calls_are_grouped_and_each_gets_its_own_result():
    results, sizes = run(_with_batcher(lambda x: [v * 10 for v in x], Batch(4, 50), list(range(10))))
    assert results == [v * 10 for v in range(10)]
    assert sizes == [4, 4, 2]


def test_lone_call_is_flushed_although_max_wait_never_passes():
    async def scenario():
        handler = HeldHandler()
        batcher = Batcher("f", Batch(32, 5), ["x"], handler, clock=FakeClock())  # time stands still
        batcher.start()
        call = asyncio.ensure_future(batcher.submit({"x": 7}))
        await turns_until(lambda: handler.batches)
        handler.release(0)
        return await call, handler.batches

    assert run(scenario()) == (70, [[7]])


def test_calls_queued_while_a_batch_runs_go_together_into_the_next_one():
    async def scenario():
        handler = HeldHandler()
        batcher = Batcher("f", Batch(32, 5), ["x"], handler, clock=FakeClock())
        batcher.start()
        first = asyncio.ensure_future(batcher.submit({"x": 1}))
        await turns_until(lambda: handler.batches)
        rest = [asyncio.ensure_future(batcher.submit({"x": x})) for x in (2, 3, 4)]
        for _ in range(50):  # however long the batch runs, no second batch starts meanwhile
            await asyncio.sleep(0)
        assert handler.batches == [[1]]
        handler.release(0)
        await turns_until(lambda: len(handler.batches) == 2)
        handler.release(1)
        return await asyncio.gather(first, *rest), handler

    results, handler = run(scenario())
    assert handler.batches == [[1], [2, 3, 4]] and results == [10, 20, 30, 40]
    assert handler.most_running == 1


def test_calls_arriving_on_consecutive_loop_turns_share_a_batch():
    async def scenario():
        handler = HeldHandler()
        batcher = Batcher("f", Batch(32, 5), ["x"], handler, clock=FakeClock())  # max_wait never passes
        batcher.start()
        calls = []
        for x in range(6):  # a burst read from six sockets over six turns
            calls.append(asyncio.ensure_future(batcher.submit({"x": x})))
            await asyncio.sleep(0)
        await turns_until(lambda: handler.batches)
        handler.release(0)
        return await asyncio.gather(*calls), handler.batches

    results, batches = run(scenario())
    assert batches == [[0, 1, 2, 3, 4, 5]] and results == [0, 10, 20, 30, 40, 50]


def test_max_wait_bounds_the_wait_for_a_batch_that_keeps_growing():
    async def scenario():
        handler = HeldHandler()
        clock = FakeClock()
        batcher = Batcher("f", Batch(32, max_wait_ms=5), ["x"], handler, clock=clock)
        batcher.start()
        calls = []
        while not handler.batches:  # one call per turn, 1 ms apart, for as long as it takes
            calls.append(asyncio.ensure_future(batcher.submit({"x": len(calls)})))
            await asyncio.sleep(0)
            clock.now += 0.001
        for call in calls:
            call.cancel()
        return handler.batches[0]

    first_batch = run(scenario())
    assert 1 < len(first_batch) <= 6 < 32  # the oldest call waited 5 ms, not until the batch was full


def test_calls_past_their_deadline_are_failed_not_batched():
    async def scenario():
        handler = HeldHandler()
        clock = FakeClock(now=100.0)
        batcher = Batcher("f", Batch(32, 5), ["x"], handler, clock=clock)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit({"x": 1}))
        await turns_until(lambda: handler.batches)
        late = asyncio.ensure_future(batcher.submit({"x": 2}, deadline=100.5))
        in_time = asyncio.ensure_future(batcher.submit({"x": 3}, deadline=102.0))
        no_deadline = asyncio.ensure_future(batcher.submit({"x": 4}))
        await turns_until(lambda: len(batcher._queue) == 3)
        clock.now = 101.0  # the first batch ran for a second: the deadline of `late` passed while queued
        handler.release(0)
        await turns_until(lambda: len(handler.batches) == 2)
        handler.release(1)
        return await asyncio.gather(first, late, in_time, no_deadline, return_exceptions=True), handler.batches

    (first, late, in_time, no_deadline), batches = run(scenario())
    assert batches == [[1], [3, 4]]  # the handler never saw the late call
    assert isinstance(late, DeadlineExceeded) and not late.started
    assert str(late) == "deadline passed before the call was batched"
    assert (first, in_time, no_deadline) == (10, 30, 40)


@pytest.mark.parametrize("lone_calls_before", [0, LONELY_BATCHES], ids=["via the batcher", "in the caller's task"])
def test_lone_call_past_its_deadline_never_reaches_the_handler(lone_calls_before):
    async def scenario():
        batches: list[list[Any]] = []

        async def run_batch(columns):
            batches.append(columns["x"])
            return columns["x"]

        batcher = Batcher("f", Batch(32, 5), ["x"], run_batch, clock=FakeClock(now=100.0))
        batcher.start()
        for x in range(lone_calls_before):
            await batcher.submit({"x": x}, deadline=101.0)
        with pytest.raises(DeadlineExceeded, match="deadline passed before the call was batched"):
            await batcher.submit({"x": "late"}, deadline=99.0)
        return batches

    assert run(scenario()) == [[x] for x in range(lone_calls_before)]


def test_callers_that_gave_up_are_dropped_from_the_batch():
    async def scenario():
        handler = HeldHandler()
        batcher = Batcher("f", Batch(32, 5), ["x"], handler, clock=FakeClock())
        batcher.start()
        first = asyncio.ensure_future(batcher.submit({"x": 1}))
        await turns_until(lambda: handler.batches)
        gone = asyncio.ensure_future(batcher.submit({"x": 2}))
        stays = asyncio.ensure_future(batcher.submit({"x": 3}))
        await turns_until(lambda: len(batcher._queue) == 2)
        gone.cancel()
        handler.release(0)
        await turns_until(lambda: len(handler.batches) == 2)
        handler.release(1)
        return await first, await stays, gone.cancelled(), handler.batches

    assert run(scenario()) == (10, 30, True, [[1], [3]])


def test_exception_fails_only_that_batch():
    def fn(x):
        if 0 in x:
            raise ValueError("bad batch")
        return x

    results, sizes = run(_with_batcher(fn, Batch(2, 50), [0, 1, 2, 3]))
    assert [type(r) for r in results[:2]] == [ValueError, ValueError]
    assert results[2:] == [2, 3]


def test_wrong_length_is_an_error_for_every_caller():
    results, _ = run(_with_batcher(lambda x: x[:-1], Batch(3, 50), [1, 2, 3]))
    assert all(isinstance(r, BatchOutputMismatch) for r in results)
    assert "returned 2 outputs for a batch of 3 inputs" in str(results[0])


def test_non_list_output_is_an_error():
    results, _ = run(_with_batcher(lambda x: 5, Batch(2, 50), [1, 2]))
    assert all(isinstance(r, BatchOutputMismatch) for r in results)


def test_sequential_callers_get_batches_of_one_and_concurrent_ones_still_group():
    async def scenario():
        sizes: list[int] = []

        async def run_batch(columns):
            await asyncio.sleep(0)  # the batch runs elsewhere; callers queue meanwhile
            return columns["x"]

        batcher = Batcher("f", Batch(8, 50), ["x"], run_batch, on_batch=sizes.append, clock=FakeClock())
        batcher.start()
        for i in range(6):  # one caller at a time
            assert await batcher.submit({"x": i}) == i
        results = await asyncio.gather(*(batcher.submit({"x": i}) for i in range(5)))
        return sizes, results

    sizes, results = run(scenario())
    assert sizes[:6] == [1] * 6
    # The first of a burst after lone callers runs at once; the others wait for it, then go together.
    assert sizes[6:] == [1, 4] and results == list(range(5))


@pytest.mark.parametrize("lone_calls_before", [0, LONELY_BATCHES], ids=["via the batcher", "in the caller's task"])
def test_lone_caller_gets_the_same_translated_error(lone_calls_before):
    async def scenario():
        async def run_batch(columns):
            if columns["x"] == ["bad"]:
                raise ValueError("bad input")
            return columns["x"]

        batcher = Batcher("f", Batch(32, 5), ["x"], run_batch, clock=FakeClock(),
                          translate_error=lambda exc: RuntimeError(f"translated: {exc}"))
        batcher.start()
        for x in range(lone_calls_before):
            assert await batcher.submit({"x": x}) == x
        with pytest.raises(RuntimeError, match="translated: bad input"):
            await batcher.submit({"x": "bad"})
        assert await batcher.submit({"x": "fine"}) == "fine"  # the handler is free again

    run(scenario())


@pytest.mark.parametrize(("lone_calls_before", "waits_a_turn"), [(0, True), (LONELY_BATCHES, False)])
def test_after_lone_callers_a_lone_call_waits_no_loop_turn(lone_calls_before, waits_a_turn):
    async def scenario():
        async def run_batch(columns):  # a handler that never yields, to count only the batcher's turns
            return columns["x"]

        batcher = Batcher("f", Batch(32, 5), ["x"], run_batch, clock=FakeClock())
        batcher.start()
        for x in range(lone_calls_before):
            await batcher.submit({"x": x})
        call = batcher.submit({"x": 42})
        try:
            call.send(None)  # run the call until it first yields to the event loop
        except StopIteration as done:
            return False, done.value
        finally:
            call.close()
        return True, None

    assert run(scenario()) == (waits_a_turn, None if waits_a_turn else 42)


def test_a_batch_that_never_returns_is_given_up_and_the_handler_serves_the_next():
    async def scenario():
        async def run_batch(columns):
            if -1 in columns["x"]:
                await asyncio.Event().wait()  # hangs for good
            return columns["x"]

        batcher = Batcher("f", Batch(8, 50), ["x"], run_batch, batch_timeout_s=0.05)
        batcher.start()
        # Two at once so that they go through the batcher's own loop, not the lone-caller path.
        hung = await asyncio.gather(batcher.submit({"x": -1}), batcher.submit({"x": -1}), return_exceptions=True)
        assert all(isinstance(r, DeadlineExceeded) and r.started for r in hung), hung
        after = await asyncio.wait_for(asyncio.gather(batcher.submit({"x": 1}), batcher.submit({"x": 2})), 10)
        assert after == [1, 2]

    asyncio.run(scenario())


# --- many calls in one request (a JSON array) -------------------------------------------------
def test_an_array_joins_the_calls_queued_beside_it_and_gets_its_outputs_in_order():
    async def scenario():
        handler = HeldHandler()
        batcher = Batcher("f", Batch(32, 5), ["x"], handler, clock=FakeClock())
        batcher.start()
        first = asyncio.ensure_future(batcher.submit({"x": 1}))
        await turns_until(lambda: handler.batches)
        single = asyncio.ensure_future(batcher.submit({"x": 2}))
        array = asyncio.ensure_future(batcher.submit_many([{"x": 3}, {"x": 4}, {"x": 5}]))
        await turns_until(lambda: len(batcher._queue) == 4)
        handler.release(0)
        await turns_until(lambda: len(handler.batches) == 2)
        handler.release(1)
        return await first, await single, await array, handler.batches

    assert run(scenario()) == (10, 20, [30, 40, 50], [[1], [2, 3, 4, 5]])


@pytest.mark.parametrize("lone_calls_before", [0, LONELY_BATCHES], ids=["fresh", "after lone callers"])
def test_an_array_arriving_alone_is_one_batch(lone_calls_before):
    async def scenario():
        sizes: list[int] = []

        async def run_batch(columns):
            return columns["x"]

        batcher = Batcher("f", Batch(8, 5), ["x"], run_batch, on_batch=sizes.append, clock=FakeClock())
        batcher.start()
        for x in range(lone_calls_before):
            await batcher.submit({"x": x})
        outputs = await batcher.submit_many([{"x": x} for x in range(5)])
        return outputs, sizes[lone_calls_before:]

    assert run(scenario()) == ([0, 1, 2, 3, 4], [5])


def test_an_array_longer_than_max_size_spans_batches():
    async def scenario():
        sizes: list[int] = []

        async def run_batch(columns):
            return columns["x"]

        batcher = Batcher("f", Batch(4, 5), ["x"], run_batch, on_batch=sizes.append, clock=FakeClock())
        batcher.start()
        return await batcher.submit_many([{"x": x} for x in range(6)]), sizes

    assert run(scenario()) == ([0, 1, 2, 3, 4, 5], [4, 2])


def test_an_empty_array_runs_nothing():
    async def scenario():
        handler = HeldHandler()
        batcher = Batcher("f", Batch(4, 5), ["x"], handler, clock=FakeClock())
        batcher.start()
        return await batcher.submit_many([]), handler.batches

    assert run(scenario()) == ([], [])


def test_calls_of_an_array_whose_caller_went_away_never_reach_the_handler():
    async def scenario():
        handler = HeldHandler()
        batcher = Batcher("f", Batch(32, 5), ["x"], handler, clock=FakeClock())
        batcher.start()
        first = asyncio.ensure_future(batcher.submit({"x": 1}))
        await turns_until(lambda: handler.batches)
        gone = asyncio.ensure_future(batcher.submit_many([{"x": 2}, {"x": 3}]))
        stays = asyncio.ensure_future(batcher.submit({"x": 4}))
        await turns_until(lambda: len(batcher._queue) == 3)
        gone.cancel()
        handler.release(0)
        await turns_until(lambda: len(handler.batches) == 2)
        handler.release(1)
        return await first, await stays, gone.cancelled(), handler.batches

    assert run(scenario()) == (10, 40, True, [[1], [4]])


def test_an_array_fails_as_a_whole_and_its_calls_not_yet_running_never_run():
    async def scenario():
        batches: list[list[Any]] = []

        async def run_batch(columns):
            batches.append(columns["x"])
            if "bad" in columns["x"]:
                raise ValueError("bad batch")
            return columns["x"]

        batcher = Batcher("f", Batch(2, 5), ["x"], run_batch, clock=FakeClock())
        batcher.start()
        with pytest.raises(ValueError, match="bad batch"):
            await batcher.submit_many([{"x": "bad"}, {"x": 1}, {"x": 2}, {"x": 3}])
        assert await batcher.submit({"x": "next"}) == "next"  # the handler is free, the rest dropped
        return batches

    assert run(scenario()) == [["bad", 1], ["next"]]


def test_calls_of_an_array_past_their_deadline_are_failed_not_batched():
    async def scenario():
        handler = HeldHandler()
        clock = FakeClock(now=100.0)
        batcher = Batcher("f", Batch(32, 5), ["x"], handler, clock=clock)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit({"x": 1}))
        await turns_until(lambda: handler.batches)
        late = asyncio.ensure_future(batcher.submit_many([{"x": 2}, {"x": 3}], deadline=100.5))
        await turns_until(lambda: len(batcher._queue) == 2)
        clock.now = 101.0
        handler.release(0)
        await first
        with pytest.raises(DeadlineExceeded, match="deadline passed before the call was batched"):
            await late
        return handler.batches

    assert run(scenario()) == [[1]]
