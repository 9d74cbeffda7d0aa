"""The metrics history: Prometheus's arithmetic over recorded steps, memory and SQLite tiers behind one query."""

from __future__ import annotations

import math

import pytest

from steadyserve.metrics.history import History
from steadyserve.metrics.query import bucket_quantile, increase
from steadyserve.metrics.store import SqliteHistoryStore

REQ = "steady_requests_total"
OK = (("code", "200"), ("deployment", "d"))
ERR = (("code", "500"), ("deployment", "d"))


@pytest.mark.parametrize(("samples", "since", "until", "expected"), [
    ([(0, 10), (5, 15), (10, 20)], 0, 10, 10),  # plain growth
    ([(0, 10), (5, 15), (10, 3)], 0, 10, 8),  # a reset: 5 before it, 3 after
    ([(5, 4), (10, 6)], 0, 10, 6),  # the series started inside the window: from zero
    ([(0, 10), (5, math.nan), (10, 2)], 0, 10, 2),  # gone, then back from zero
    ([(0, 10), (5, 15)], 5, 10, 0),  # nothing new in the window
    ([(0, 10), (5, 15), (10, 20)], 2, 7, 5),  # the window's start falls between steps
])
def test_increase_counts_like_prometheus(samples, since, until, expected):
    assert increase(samples, since, until) == expected


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, [(0.1, 50), (0.2, 100), (math.inf, 100)], 0.1),
    (0.75, [(0.1, 50), (0.2, 100), (math.inf, 100)], 0.15),
    (0.99, [(0.1, 0), (0.2, 0), (math.inf, 10)], 0.2),  # past the largest bound: that bound
    (0.5, [(0.1, 0), (math.inf, 0)], None),  # nothing observed
])
def test_bucket_quantile_interpolates_inside_the_bucket(q, buckets, expected):
    found = bucket_quantile(q, buckets)
    assert found == expected if expected is None else found == pytest.approx(expected)


def _history(store=None) -> History:
    h = History(step_s=5, memory_s=60, store=store, rollup_s=10)
    for i in range(0, 13):  # one minute: 10 calls each 5 s, 1 of them failing from t=30
        ts = 1000.0 + 5 * i
        h.add(ts, {(REQ, OK): 10.0 * i, (REQ, ERR): max(0.0, i - 6.0)})
    return h


def test_increase_by_label_and_total():
    h = _history()
    assert h.total_increase(REQ, {"deployment": "d"}, 30, 1060) == 60 + 6
    assert h.increase(REQ, {"deployment": "d"}, 30, 1060, by=("code",)) == {(("code", "200"),): 60,
                                                                           (("code", "500"),): 6}
    assert h.total_increase(REQ, {"deployment": "other"}, 30, 1060) == 0


def test_a_series_that_stops_being_reported_is_gone_not_frozen():
    h = History(step_s=5, memory_s=60)
    h.add(0, {("steady_inflight_requests", (("deployment", "d"),)): 3})
    h.add(5, {})
    assert h.latest("steady_inflight_requests", {}, 5) == {}
    h.add(10, {("steady_inflight_requests", (("deployment", "d"),)): 1})
    assert h.latest("steady_inflight_requests", {}, 10) == {(("deployment", "d"),): 1}


def test_memory_keeps_only_its_window():
    h = _history()
    h.add(1200.0, {(REQ, OK): 500.0})
    assert all(ts >= 1200.0 - 60 for ts in h.steps(0, 2000))
    assert h.select(REQ, {"code": "500"}) == {}  # no step of it left in memory, and no store


def test_quantile_over_a_window():
    h = History(step_s=5, memory_s=600)
    name = "steady_request_duration_seconds_bucket"
    for i, (fast, slow) in enumerate([(0, 0), (90, 100), (180, 200)]):
        h.add(5.0 * i, {(name, (("le", "0.1"),)): float(fast), (name, (("le", "1.0"),)): float(slow),
                        (name, (("le", "+Inf"),)): float(slow)})
    assert h.quantile(0.5, "steady_request_duration_seconds", {}, 10, 10) == pytest.approx(0.1 * 100 / 180)
    assert h.quantile(0.95, "steady_request_duration_seconds", {}, 10, 10) == pytest.approx(0.1 + 0.9 * 10 / 20)


def test_the_store_answers_what_memory_no_longer_holds_and_outlives_the_controller(tmp_path):
    path = tmp_path / "observability.db"
    h = _history(SqliteHistoryStore(path))
    for i in range(13, 40):  # five more minutes: the first one leaves memory
        h.add(1000.0 + 5 * i, {(REQ, OK): 10.0 * i, (REQ, ERR): max(0.0, i - 6.0)})
    now = 1000.0 + 5 * 39
    assert h.memory_since > 1000.0 + 60
    # Over the last 3 minutes, all from memory; over the whole run, the store's per-minute rows first.
    assert h.total_increase(REQ, {"code": "200"}, 50, now) == 100  # memory alone: exact
    # Memory no longer reaches 180 s back: the start comes from the store, exact to one roll-up (10 s).
    assert h.total_increase(REQ, {"code": "200"}, 180, now) == pytest.approx(360, abs=20)
    assert h.total_increase(REQ, {"code": "200"}, now - 999, now) == pytest.approx(390, abs=10 * 2)
    reopened = History(step_s=5, memory_s=60, store=SqliteHistoryStore(path))  # a new controller
    assert reopened.total_increase(REQ, {"code": "200"}, now - 999, now) == pytest.approx(390, abs=10 * 10)


def test_an_idle_history_writes_nothing_to_the_store(tmp_path):
    store = SqliteHistoryStore(tmp_path / "observability.db")
    writes: list[int] = []
    original = store.write
    store.write = lambda ts, values: (writes.append(len(values)), original(ts, values))  # type: ignore[method-assign]
    h = History(step_s=5, memory_s=60, store=store, rollup_s=10)
    for i in range(20):
        h.add(5.0 * i, {(REQ, OK): 7.0})
    assert writes == [1]


def test_prune_keeps_each_series_value_at_the_cut(tmp_path):
    store = SqliteHistoryStore(tmp_path / "observability.db")
    store.write(0, {(REQ, OK): 1.0})
    store.write(100, {(REQ, OK): 2.0})
    store.write(200, {(REQ, OK): 3.0})
    store.prune(150)
    assert store.select(REQ, 150, 300) == {OK: [(100, 2.0), (200, 3.0)]}
