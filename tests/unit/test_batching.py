"""Dynamic batching: flush policy and the batcher with real asyncio."""

from __future__ import annotations

import asyncio

import pytest

from steadyserve import Batch
from steadyserve.batching import Batcher, BatchOutputMismatch, FlushNow, WaitUntil, decide_flush


@pytest.mark.parametrize(
    ("queued", "oldest", "now", "expected"),
    [
        (4, 0.0, 0.0, FlushNow(4)),  # full
        (9, 0.0, 0.0, FlushNow(4)),  # more than full: take max_size
        (2, 0.0, 0.001, WaitUntil(0.005)),  # wait for more
        (2, 0.0, 0.005, FlushNow(2)),  # oldest waited max_wait
    ],
)
def test_decide_flush(queued, oldest, now, expected):
    assert decide_flush(queued, oldest, now, Batch(max_size=4, max_wait_ms=5)) == expected


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


def test_lone_call_is_flushed_after_max_wait():
    results, sizes = run(_with_batcher(lambda x: x, Batch(32, 1), [7]))
    assert results == [7] and sizes == [1]


def test_no_waiting_after_batches_of_one_until_company_arrives():
    batch = Batch(max_size=4, max_wait_ms=5)
    assert decide_flush(1, 0.0, 0.0, batch, lonely_batches=2) == WaitUntil(0.005)
    assert decide_flush(1, 0.0, 0.0, batch, lonely_batches=3) == FlushNow(1)
    assert decide_flush(2, 0.0, 0.0, batch, lonely_batches=3) == FlushNow(2)


def test_sequential_calls_stop_waiting_and_concurrent_ones_still_group():
    async def scenario():
        sizes: list[int] = []

        async def run_batch(columns):
            await asyncio.sleep(0)  # the batch runs elsewhere; callers queue meanwhile
            return columns["x"]

        batcher = Batcher("f", Batch(8, 50), ["x"], run_batch, on_batch=sizes.append)
        batcher.start()
        for i in range(6):  # one caller at a time
            assert await batcher.submit({"x": i}) == i
        lonely = batcher._lonely_batches
        results = await asyncio.gather(*(batcher.submit({"x": i}) for i in range(5)))
        return sizes, lonely, results, batcher._lonely_batches

    sizes, lonely, results, after = asyncio.run(scenario())
    assert sizes[:6] == [1] * 6 and lonely == 6
    assert sizes[6:] == [5] and results == list(range(5))  # concurrent callers still share a batch
    assert after == 0  # ... and waiting for company is back on
