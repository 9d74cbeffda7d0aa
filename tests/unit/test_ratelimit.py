"""Token rate limits: the GCRA decision, and its cells shared between gateway processes through a file."""

from __future__ import annotations

import stat

import pytest

from steadyserve.gateway.ratelimit import LocalLimiter, gcra, pick_way
from steadyserve.gateway.sharedcells import SharedCounters, SharedLimiter, token_key


def admitted(limiter: LocalLimiter | SharedLimiter, token: str, times: list[float], rate: float,
             burst: int) -> int:
    return sum(limiter.take(token, rate, burst, t) == 0.0 for t in times)


def test_a_fresh_token_gets_its_burst_at_once_then_the_rate():
    rate, burst, tat, allowed = 2.0, 3, 0.0, []
    for _ in range(4):
        decision = gcra(10.0, tat, rate, burst)
        allowed.append(decision.allowed)
        tat = decision.tat
    assert allowed == [True, True, True, False]
    assert gcra(10.0, tat, rate, burst).retry_after_s == pytest.approx(0.5)
    assert gcra(10.5, tat, rate, burst).allowed  # one interval later, one more call


def test_a_refusal_leaves_the_state_as_it_was():
    decision = gcra(0.0, 1.0, rate_per_s=1.0, burst=1)
    assert not decision.allowed and decision.tat == 1.0 and decision.retry_after_s == pytest.approx(1.0)


@pytest.mark.parametrize("tat", [float("nan"), float("inf"), 1e12])
def test_an_impossible_stored_state_counts_as_the_burst_used_up_never_as_blocked_for_long(tat):
    # A torn write, a cell from before a reboot or a lowered rate: the next call waits one interval at most.
    assert not gcra(100.0, tat, rate_per_s=10.0, burst=5).allowed
    assert gcra(100.1, gcra(100.0, tat, 10.0, 5).tat, 10.0, 5).allowed


@pytest.mark.parametrize(("rate", "burst", "seconds"), [(10.0, 1, 2.0), (5.0, 20, 3.0), (100.0, 7, 1.0)])
def test_callers_as_fast_as_they_like_get_at_most_burst_plus_rate_times_elapsed(rate, burst, seconds):
    times = [i * 0.001 for i in range(int(seconds * 1000) + 1)]  # a call every millisecond
    assert admitted(LocalLimiter(), "t", times, rate, burst) == burst + int(rate * seconds)


def test_a_caller_under_the_rate_is_never_refused():
    times = [i * 0.2 for i in range(100)]  # 5/s against 10/s
    assert admitted(LocalLimiter(), "t", times, rate=10.0, burst=1) == 100


def test_a_cell_is_found_by_its_key_else_an_empty_or_expired_one_is_taken():
    empty, a, b = bytes(16), b"a" * 16, b"b" * 16
    assert pick_way([a, b, empty], [5.0, 7.0, 0.0], b, now=1.0) == (1, 7.0)
    assert pick_way([a, empty, empty], [5.0, 0.0, 0.0], b, now=1.0) == (1, 0.0)
    assert pick_way([a, b], [0.5, 7.0], b"c" * 16, now=1.0) == (0, 0.0)  # a's TAT has passed: a owes nothing
    assert pick_way([a, b], [5.0, 3.0], b"c" * 16, now=1.0) == (1, 0.0)  # all busy: the nearest to expiry


def test_gateway_processes_share_one_limit_through_the_file(tmp_path):
    path = tmp_path / "ratelimits.cells"
    first, second = SharedLimiter(path), SharedLimiter(path)  # two mappings, as two processes have
    try:
        takes = [(first if i % 2 else second).take("tok", 10.0, 4, 50.0) for i in range(8)]
        assert sum(t == 0.0 for t in takes) == 4  # the burst once between them, not once each
        assert first.take("other", 10.0, 4, 50.0) == 0.0  # another token has its own cell
    finally:
        first.close()
        second.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_tokens_cell_stays_put_when_other_tokens_come_and_go(tmp_path):
    limiter = SharedLimiter(tmp_path / "cells", buckets=1, ways=4)  # every token in one bucket
    try:
        assert admitted(limiter, "keep", [0.0] * 3, rate=1.0, burst=2) == 2
        for other in ("x", "y", "z"):  # added, used, then revoked: their cells expire
            limiter.take(other, 1.0, 1, 0.0)
        limiter.forget({"keep"})
        assert limiter.take("keep", 1.0, 2, 0.5) > 0  # still limited: its state was not lost
        assert admitted(limiter, "new", [5.0], rate=1.0, burst=1) == 1  # takes an expired cell
        assert limiter.take("keep", 1.0, 2, 2.0) == 0.0
    finally:
        limiter.close()


def test_token_keys_do_not_depend_on_the_process_hash_seed():
    assert token_key("a1b2c3d4") == bytes.fromhex("89a6ea13239f73f6d21984c11c63d229")
    assert token_key("a1b2c3d4") != token_key("a1b2c3d5")


def test_refusal_counters_survive_the_process_that_counted(tmp_path):
    path = tmp_path / "refusals-g0.counts"
    counters = SharedCounters(path, ("401", "429"))
    counters.add("401", 3)
    counters.add("429")
    counters.close()  # the process is gone; its successor opens the same file
    again = SharedCounters(path, ("401", "429"))
    try:
        again.add("401")
        assert again.read() == {"401": 4, "429": 1}
    finally:
        again.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
