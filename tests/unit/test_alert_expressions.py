"""Each expression's value over a hand-built history, and its PromQL."""

from __future__ import annotations

import pytest
from alert_helpers import BUCKETS, REQUESTS, calls, key, steady_history

from steadyserve.alerting.expressions import (
    ErrorRatio,
    Inflight,
    LatencyQuantile,
    LogFindings,
    MemoryBytes,
    MemoryRatio,
    Restarts,
    ShedRatio,
    expression_of,
    selector,
)
from steadyserve.metrics.history import History

NOW = 600.0


def history_of(per_step=None, gauges=None):
    return steady_history(10.0, 60, per_step or {}, gauges)


@pytest.mark.parametrize("ok, bad, code, expected", [
    (90, 10, "500", 0.1),
    (100, 0, "500", 0.0),
    (0, 5, "503", 1.0),  # shed calls answered 503 count as errors
    (90, 10, "429", 0.0),  # 4xx are the caller's
])
def test_error_ratio_counts_5xx_among_all_calls(ok, bad, code, expected):
    history = history_of(calls(ok_per_step=ok, bad_per_step=bad, bad_code=code))
    assert ErrorRatio(300).value(history, "d", NOW) == pytest.approx(expected)


def test_error_ratio_of_one_handler_reads_only_its_calls():
    history = history_of({**calls(ok_per_step=10, bad_per_step=10, handler="a"), **calls(ok_per_step=10, handler="b")})
    assert ErrorRatio(300, handler="b").value(history, "d", NOW) == 0.0
    assert ErrorRatio(300).value(history, "d", NOW) == pytest.approx(1 / 3)


def test_error_ratio_counts_across_a_counter_reset():
    history = History(step_s=10)
    ok, bad = key(REQUESTS, deployment="d", code="200"), key(REQUESTS, deployment="d", code="500")
    for i, (ok_total, bad_total) in enumerate([(100, 0), (200, 0), (10, 10), (20, 20)]):  # a gateway restarted
        history.add(i * 10.0, {ok: ok_total, bad: bad_total})
    # From the sample at 0 s: 100 more ok, then 10 + 10 after the reset; 10 + 10 errors: 20 of 140.
    assert ErrorRatio(25).value(history, "d", 30.0) == pytest.approx(20 / 140)


@pytest.mark.parametrize("expr", [ErrorRatio(300), ShedRatio(300), LatencyQuantile(0.99, 300), Inflight(),
                                  MemoryRatio(), MemoryBytes(), Restarts(600)])
def test_no_data_is_none(expr):
    assert expr.value(History(step_s=10), "d", NOW) is None


@pytest.mark.parametrize("expr", [ErrorRatio(300), ShedRatio(300), LatencyQuantile(0.99, 300)])
def test_no_calls_in_the_window_is_none(expr):
    history = history_of(gauges={key(REQUESTS, deployment="d", code="200"): 5.0,
                                 key("steady_admission_total", deployment="d", decision="shed"): 5.0,
                                 key(BUCKETS, deployment="d", le="+Inf"): 5.0})
    assert expr.value(history, "d", NOW) is None


def test_another_deployment_is_not_read():
    history = history_of(calls("other", bad_per_step=10))
    assert ErrorRatio(300).value(history, "d", NOW) is None


def test_shed_ratio_is_shed_among_all_decisions():
    history = history_of({key("steady_admission_total", deployment="d", decision="shed"): 1,
                          key("steady_admission_total", deployment="d", decision="admitted"): 3})
    assert ShedRatio(300).value(history, "d", NOW) == pytest.approx(0.25)


def test_latency_quantile_interpolates_in_the_histogram():
    # 100 calls per step, all between 0.25 s and 0.5 s: p99 = 0.25 + 0.25 * 0.99.
    per_step = {key(BUCKETS, deployment="d", handler="predict", le=le): (100 if float(le) >= 0.5 else 0)
                for le in ("0.1", "0.25", "0.5", "1.0", "+Inf")}
    assert LatencyQuantile(0.99, 300).value(history_of(per_step), "d", NOW) == pytest.approx(0.4975)


def test_inflight_sums_the_gateways_readings():
    gauges = {key("steady_inflight_requests", deployment="d", gateway="0"): 3.0,
              key("steady_inflight_requests", deployment="d", gateway="1"): 4.0}
    assert Inflight().value(history_of(gauges=gauges), "d", NOW) == 7.0


def test_a_gauge_gone_stale_is_no_data():
    history = History(step_s=10)
    history.add(0.0, {key("steady_inflight_requests", deployment="d"): 3.0})
    assert Inflight().value(history, "d", 0.0) == 3.0
    assert Inflight().value(history, "d", 100.0) is None


MEMORY = "steady_replica_resident_memory_bytes"


@pytest.mark.parametrize("limit, expected", [(1000.0, 0.8), (None, None), (0.0, None)])
def test_memory_ratio_is_the_largest_replica_over_the_limit(limit, expected):
    gauges = {key(MEMORY, deployment="d", replica="r0"): 800.0, key(MEMORY, deployment="d", replica="r1"): 300.0}
    if limit is not None:
        gauges[key("steady_replica_memory_limit_bytes", deployment="d")] = limit
    assert MemoryRatio().value(history_of(gauges=gauges), "d", NOW) == (pytest.approx(expected) if expected else None)
    assert MemoryBytes().value(history_of(gauges=gauges), "d", NOW) == 800.0


def test_restarts_counts_what_the_counter_grew_in_the_window():
    history = History(step_s=60)
    series = key("steady_replica_restarts_total", deployment="d")
    for i, total in enumerate([0, 0, 1, 1, 3, 3, 3, 3, 3, 3, 3, 5]):
        history.add(i * 60.0, {series: total})
    assert Restarts(600).value(history, "d", 660.0) == 5.0  # 1 (at 120 s) ... 5 (at 660 s); the one at 0 is before
    assert Restarts(120).value(history, "d", 660.0) == 2.0


def test_log_findings_count_what_log_analysis_found_in_the_window_and_none_is_zero():
    history = History(step_s=60)
    series = key("steady_log_findings_total", deployment="d", kind="new_error_template")
    assert LogFindings(600).value(history, "d", 0.0) == 0.0  # nothing found yet: zero, not "no data"
    for i, total in enumerate([0, 1, 1, 2]):
        history.add(i * 60.0, {series: total})
    assert LogFindings(600).value(history, "d", 180.0) == 2.0
    assert LogFindings(60).value(history, "d", 180.0) == 1.0


@pytest.mark.parametrize("expr, promql", [
    (ErrorRatio(300), '(sum(rate(steady_requests_total{deployment="d",code=~"5.."}[5m])) or vector(0))'
                      ' / sum(rate(steady_requests_total{deployment="d"}[5m]))'),
    (ErrorRatio(60, "predict"), '(sum(rate(steady_requests_total{deployment="d",handler="predict",code=~"5.."}[1m]))'
                                ' or vector(0)) / sum(rate(steady_requests_total{deployment="d",handler="predict"}[1m]))'),
    (LatencyQuantile(0.99, 300), 'histogram_quantile(0.99, sum by (le)'
                                 ' (rate(steady_request_duration_seconds_bucket{deployment="d"}[5m])))'),
    (Inflight(), 'sum(steady_inflight_requests{deployment="d"})'),
    (MemoryRatio(), 'max(steady_replica_resident_memory_bytes{deployment="d"})'
                    ' / max(steady_replica_memory_limit_bytes{deployment="d"})'),
    (Restarts(600), 'sum(increase(steady_replica_restarts_total{deployment="d"}[10m]))'),
    (LogFindings(600), '(sum(increase(steady_log_findings_total{deployment="d"}[10m])) or vector(0))'),
])
def test_promql_reads_the_same_series(expr, promql):
    assert expr.promql("d") == promql


@pytest.mark.parametrize("name, window_s, quantile, expected", [
    ("latency_p50", 60, None, LatencyQuantile(0.5, 60)), ("latency_quantile", 60, 0.95, LatencyQuantile(0.95, 60)),
    ("shed_ratio", 30, None, ShedRatio(30)), ("memory_bytes", 300, None, MemoryBytes()),
])
def test_expression_of_names(name, window_s, quantile, expected):
    assert expression_of(name, window_s, quantile) == expected


def test_a_label_value_is_escaped_in_promql():
    assert selector("m", a='x"y\\z') == 'm{a="x\\"y\\\\z"}'
