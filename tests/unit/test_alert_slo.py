"""SLOs: burn rates over two windows, the SRE workbook's alerts, the error budget."""

from __future__ import annotations

import pytest
from alert_helpers import BUCKETS, calls, key, steady_history

from steadyserve.alerting.evaluate import Phase, evaluate_all
from steadyserve.alerting.rules import rules_for
from steadyserve.alerting.slo import BURN_WINDOWS, bad_ratio, budget, burn_rates, burn_rules, recording_rules
from steadyserve.alerting.slospec import SloSpec
from steadyserve.metrics.history import History

SCALE = 0.001  # 1 h -> 3.6 s, 5 m -> 0.3 s, 3 d -> 259.2 s
STEP_S = 0.1


def availability(objective: float = 0.999, scale: float = SCALE, period: str = "7d") -> SloSpec:
    return SloSpec.model_validate({"availability": objective, "window_scale": scale, "period": period})


def history_with(segments: list[tuple[float, float, int]], step_s: float = STEP_S) -> History:
    """Calls per step (ok, bad) for a number of steps, stretch after stretch."""
    history = History(step_s=step_s, memory_s=1e6)
    ok_key, bad_key = (key("steady_requests_total", deployment="d", revision="1", handler="predict", code=c)
                       for c in ("200", "500"))
    ok = bad = 0.0
    i = 0
    history.add(0.0, {ok_key: 0.0, bad_key: 0.0})
    for ok_per_step, bad_per_step, steps in segments:
        for _ in range(steps):
            i += 1
            ok, bad = ok + ok_per_step, bad + bad_per_step
            history.add(i * step_s, {ok_key: ok, bad_key: bad})
    return history


def firing(history: History, slo: SloSpec, now: float) -> set[str]:
    evaluation = evaluate_all(history, burn_rules("d", slo), {}, now)
    return {s.alertname for s in evaluation.states.values() if s.phase == Phase.FIRING}


def test_a_fast_burn_pages_on_every_window_pair():
    # 5% errors against a 0.1% budget: 50x, for 300 s (longer than the slow pair's 259 s window).
    history = history_with([(95, 5, 3000)])
    assert firing(history, availability(), 300.0) == {"SteadyAvailabilityBudgetBurnFast",
                                                      "SteadyAvailabilityBudgetBurnMedium",
                                                      "SteadyAvailabilityBudgetBurnSlow"}


def test_a_slow_burn_opens_a_ticket_but_pages_nobody():
    # 0.3% errors: 3x the budget, under 6x and 14.4x.
    history = history_with([(997, 3, 3000)])
    assert firing(history, availability(), 300.0) == {"SteadyAvailabilityBudgetBurnSlow"}


def test_within_budget_nothing_fires():
    history = history_with([(9995, 5, 3000)])  # 0.05%: half the budget
    assert firing(history, availability(), 300.0) == set()


def test_a_burn_that_stopped_resolves_with_the_short_window():
    # 50x for most of the hour-equivalent, then clean for longer than the short window (0.3 s).
    history = history_with([(95, 5, 30), (100, 0, 6)])
    rates = {r.speed: r for r in burn_rates(history, "d", availability(), 3.6)["availability"]}
    assert rates["Fast"].long_burn > 14.4 and rates["Fast"].short_burn == 0.0
    assert "SteadyAvailabilityBudgetBurnFast" not in firing(history, availability(), 3.6)


def test_a_short_spike_alone_does_not_page():
    # Clean for most of the long window, then a spike: the short window burns, the long one not enough.
    history = history_with([(9999, 1, 33), (0, 100, 3)])
    rates = {r.speed: r for r in burn_rates(history, "d", availability(), 3.6)["availability"]}
    assert rates["Fast"].short_burn > 14.4 > rates["Fast"].long_burn
    assert "SteadyAvailabilityBudgetBurnFast" not in firing(history, availability(), 3.6)


def test_windows_scale_with_window_scale():
    rules = {r.name: r.expr for r in burn_rules("d", availability(scale=0.01))}
    fast = rules["SteadyAvailabilityBudgetBurnFast"]
    assert (fast.long_s, fast.short_s, fast.factor) == pytest.approx((36.0, 3.0, 14.4))  # type: ignore[attr-defined]
    assert [(w.factor, w.long_s, w.short_s) for w in BURN_WINDOWS] == [
        (14.4, 3600.0, 300.0), (6.0, 21600.0, 1800.0), (1.0, 259200.0, 21600.0)]


def test_burn_rules_are_paged_or_ticketed_as_the_workbook_says():
    rules = {r.name: r for r in burn_rules("d", availability())}
    assert {name: r.severity for name, r in rules.items()} == {
        "SteadyAvailabilityBudgetBurnFast": "page", "SteadyAvailabilityBudgetBurnMedium": "page",
        "SteadyAvailabilityBudgetBurnSlow": "ticket"}
    assert all(r.labels()["slo"] == "availability" for r in rules.values())


def latency_history(fast_per_step: float, slow_per_step: float, threshold: str = "0.25") -> History:
    """Calls per step at most ``threshold`` seconds, and slower ones (in the next bucket)."""
    bounds = ["0.1", "0.25", "0.5", "+Inf"]
    per_step = {}
    for le in bounds:
        fast = fast_per_step if le == "+Inf" or float(le) >= float(threshold) else 0.0
        slow = slow_per_step if le == "+Inf" or float(le) > float(threshold) else 0.0
        per_step[key(BUCKETS, deployment="d", handler="predict", le=le)] = fast + slow
    return steady_history(1.0, 600, per_step)


def test_the_latency_sli_counts_calls_slower_than_the_threshold():
    slo = SloSpec.model_validate({"latency": {"threshold_ms": 250, "objective": 0.99}})
    assert bad_ratio(latency_history(98, 2), "d", "latency", slo, 300, 600.0) == pytest.approx(0.02)


@pytest.mark.parametrize("ok, bad, consumed", [(9990, 10, 1.0), (9995, 5, 0.5), (10_000, 0, 0.0), (9980, 20, 2.0)])
def test_budget_spent_is_the_bad_ratio_over_the_allowed_one(ok, bad, consumed):
    slo = availability(objective=0.999, scale=1.0, period="1h")
    history = steady_history(60.0, 60, calls(ok_per_step=ok / 60, bad_per_step=bad / 60))
    (found,) = budget(history, "d", slo, 3600.0)
    assert found.calls == pytest.approx(ok + bad)
    assert found.bad_calls == pytest.approx(bad)
    assert found.consumed == pytest.approx(consumed)
    assert found.remaining == pytest.approx(1 - consumed)
    assert found.allowed_bad_calls == pytest.approx(10.0)
    assert found.sli_value == pytest.approx(1 - bad / (ok + bad))


def test_budget_period_scales_and_says_how_much_history_there_was():
    slo = availability(scale=0.002, period="7d")  # 1209.6 s
    history = steady_history(10.0, 100, calls(ok_per_step=10), start=5000.0)  # from 5000 s to 6000 s
    (found,) = budget(history, "d", slo, 6000.0)
    assert found.period_s == pytest.approx(1209.6)
    assert found.data_since == 5000.0
    assert found.consumed == 0.0


def test_a_period_longer_than_the_history_keeps_is_refused():
    with pytest.raises(ValueError, match="at most 8d: the metrics history keeps 8 days"):
        availability(period="30d")


def test_budget_without_calls_is_unknown():
    (found,) = budget(History(), "d", availability(), 100.0)
    assert (found.calls, found.consumed, found.remaining, found.sli_value) == (0.0, None, None, None)


def test_recording_rules_cover_each_window_once_per_sli():
    slo = SloSpec.model_validate({"availability": 0.999, "latency": {"threshold_ms": 1000, "objective": 0.99}})
    records = [name for name, _ in recording_rules("d", slo)]
    assert records == [f"steady:slo_{sli}_bad:ratio_rate{w}" for sli in ("availability", "latency")
                       for w in ("5m", "30m", "1h", "6h", "3d")]
    latency = dict(recording_rules("d", slo))["steady:slo_latency_bad:ratio_rate5m"]
    assert 'le=~"1\\\\.0|1"' in latency  # as prometheus_client writes it, or as Prometheus 3 normalises it


def test_burn_rule_promql_needs_both_windows():
    rule = next(r for r in rules_for("d", [], availability(scale=1.0)) if r.name.endswith("Fast"))
    assert rule.condition_promql() == (
        '(steady:slo_availability_bad:ratio_rate1h{deployment="d"} / (1 - 0.999)'
        ' and steady:slo_availability_bad:ratio_rate5m{deployment="d"} / (1 - 0.999) > 14.4) > 14.4')
