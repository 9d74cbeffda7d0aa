"""Autoscaling settings, the scaling policy (``decide`` / ``applied``) and the ``Autoscaler`` that drives it.

The policy is a pure function of a snapshot and a state, so every test builds readings by hand and
either decides once or runs a ``Driver``: a reading each second, a decision each ``decision_s``, each
decision applied at once, exactly as the controller does.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from steadyserve.autoscaling.autoscaler import DEFAULT_STARTUP_S, Autoscaler
from steadyserve.autoscaling.policy import (
    Decision,
    Forecast,
    Reading,
    ScalingState,
    Snapshot,
    applied,
    decide,
    mean_over,
)
from steadyserve.autoscaling.settings import (
    DEFAULT_TARGETS,
    AutoscalingSettings,
    PredictiveSettings,
    ScalingRule,
)

NOW = 1000.0
NO_PANIC = {"panic_threshold": 100.0}  # isolates a rule from panic mode
NO_SCALE_DOWN_WINDOW = {"scale_down": ScalingRule(stabilization_s=0.0)}


def settings(**overrides: object) -> AutoscalingSettings:
    return AutoscalingSettings.model_validate(overrides)


def steady(load: float, rate: float | None = None, *, now: float = NOW, for_s: int = 60) -> tuple[Reading, ...]:
    """A reading each second for ``for_s`` seconds up to ``now``, all the same."""
    rate = load if rate is None else rate
    return tuple(Reading(now - for_s + 1 + i, load, rate) for i in range(for_s))


def snapshot(load: float | tuple[Reading, ...], *, current: int, ready: int | None = None, rate: float | None = None,
             min_replicas: int = 1, max_replicas: int = 64, **more: object) -> Snapshot:
    readings = load if isinstance(load, tuple) else steady(load, rate)
    return Snapshot(now=NOW, current=current, ready=current if ready is None else ready, min_replicas=min_replicas,
                    max_replicas=max_replicas, readings=readings, **more)  # type: ignore[arg-type]


def reliable(rate: float, lead_s: float = 15.0) -> Forecast:
    return Forecast(rate, True, "forecast error 8%", lead_s)


@dataclass
class Driver:
    """The controller's loop in miniature: a reading each second, a decision each ``decision_s``, applied."""

    settings: AutoscalingSettings = field(default_factory=AutoscalingSettings)
    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int = 64
    now: int = 0
    ready: int | None = None  # None: every replica is ready as soon as it is asked for
    forecast: Forecast | None = None
    waiting: int = 0
    state: ScalingState = field(default_factory=ScalingState)
    readings: deque[Reading] = field(default_factory=deque)
    last_call_at: float | None = None
    history: list[tuple[int, Decision]] = field(default_factory=list)  # (time, decision)

    def run(self, for_s: int, load: float, rate: float | None = None) -> list[Decision]:
        """Hold ``load`` (and ``rate`` calls/s, default the load) for ``for_s`` seconds; the decisions made."""
        rate = load if rate is None else rate
        made = []
        for _ in range(for_s):
            self.now += 1
            self.readings.append(Reading(self.now, load, rate))
            while self.readings[0].ts < self.now - self.settings.window_s:
                self.readings.popleft()
            if rate > 0:
                self.last_call_at = self.now
            if self.now % self.settings.decision_s == 0:
                made.append(self.decide())
        return made

    def decide(self) -> Decision:
        snap = Snapshot(now=self.now, current=self.replicas,
                        ready=self.replicas if self.ready is None else self.ready,
                        min_replicas=self.min_replicas, max_replicas=self.max_replicas,
                        readings=tuple(self.readings), forecast=self.forecast, last_call_at=self.last_call_at,
                        waiting=self.waiting)
        decision = decide(snap, self.state, self.settings)
        assert decision.reason, decision  # every decision explains itself
        self.state = applied(decision.state, self.now, self.replicas, decision.replicas, self.settings)
        self.replicas = decision.replicas
        self.history.append((self.now, decision))
        return decision

    def counts(self, since: int = 0) -> list[int]:
        return [d.replicas for t, d in self.history if t > since]


# --- settings ------------------------------------------------------------------------------


def test_a_short_stable_window_shortens_the_default_panic_window():
    assert AutoscalingSettings(window_s=5).short_window_s == 5.0
    assert AutoscalingSettings(window_s=5, panic_window_s=2).short_window_s == 2.0


def test_predictive_true_is_short_for_enabled_with_the_defaults():
    assert AutoscalingSettings(predictive=True).predictive == AutoscalingSettings(predictive={"enabled": True}).predictive


def test_the_idle_reason_alone_explains_a_scale_to_zero():
    s = AutoscalingSettings(idle_s=10, window_s=60)
    reading = (Reading(100.0, 0.0, 0.0),)
    decision = decide(Snapshot(now=100.0, current=1, ready=1, min_replicas=0, max_replicas=3, readings=reading,
                               last_call_at=50.0), ScalingState(), s)
    assert decision.replicas == 0 and decision.reason == "no calls for 50 s (idle_s 10): scaling to zero"


def test_a_call_remembered_by_the_stable_window_does_not_hold_off_scale_to_zero():
    # A call 20 s ago still weighs in the 60 s average, but nothing is in flight now: idle_s decides.
    s = AutoscalingSettings(idle_s=10, window_s=60)
    readings = tuple(Reading(float(t), 1.0 if t < 80 else 0.0, 0.0) for t in range(60, 101))
    decision = decide(Snapshot(now=100.0, current=1, ready=1, min_replicas=0, max_replicas=3, readings=readings,
                               last_call_at=80.0), ScalingState(), s)
    assert decision.replicas == 0


def test_defaults_follow_the_hpa_behaviour_model_and_knative_panic_mode():
    s = AutoscalingSettings()
    assert (s.metric, s.target_value, s.tolerance, s.window_s, s.decision_s) == ("inflight", 2.0, 0.1, 60.0, 5.0)
    assert (s.short_window_s, s.panic_threshold) == (6.0, 2.0)
    assert s.scale_up == ScalingRule(stabilization_s=0, period_s=15, max_replicas=4, max_percent=100)
    assert s.scale_down == ScalingRule(stabilization_s=300, period_s=15, max_replicas=None, max_percent=100)
    assert (s.idle_s, s.predictive.enabled) == (300.0, False)


@pytest.mark.parametrize("metric", ["inflight", "cpu", "queue"])
def test_a_metric_without_a_target_uses_its_default_target(metric):
    assert settings(metric=metric).target_value == DEFAULT_TARGETS[metric]


@pytest.mark.parametrize("metric", ["inflight", "rps", "cpu", "queue"])
def test_a_given_target_wins_over_the_default(metric):
    assert settings(metric=metric, target=7.5).target_value == 7.5


def test_metric_rps_without_a_target_is_rejected():
    with pytest.raises(ValidationError, match=r"metric rps needs a target \(calls/s per replica\)"):
        settings(metric="rps")


@pytest.mark.parametrize(("panic_window_s", "window_s", "ok"), [(6, 60, True), (60, 60, True), (61, 60, False),
                                                                (10, 5, False)])
def test_the_panic_window_must_not_exceed_the_stable_window(panic_window_s, window_s, ok):
    if ok:
        assert settings(panic_window_s=panic_window_s, window_s=window_s).panic_window_s == panic_window_s
    else:
        with pytest.raises(ValidationError, match="panic_window_s .* must not exceed window_s"):
            settings(panic_window_s=panic_window_s, window_s=window_s)


def test_predictive_scaling_on_the_queue_metric_is_rejected():
    with pytest.raises(ValidationError, match="predictive needs metric inflight, rps or cpu"):
        settings(metric="queue", predictive={"enabled": True})


@pytest.mark.parametrize("metric", ["inflight", "rps", "cpu"])
def test_predictive_scaling_is_accepted_on_rate_following_metrics(metric):
    assert settings(metric=metric, target=5, predictive={"enabled": True}).predictive.enabled


def test_predictive_settings_disabled_on_the_queue_metric_are_accepted():
    assert settings(metric="queue", predictive={"enabled": False}).metric == "queue"


@pytest.mark.parametrize("season_s", [10, 10.0, 3600, 86400, 30 * 86400, "auto"])
def test_season_lengths_from_ten_seconds_to_thirty_days_or_auto_are_accepted(season_s):
    assert PredictiveSettings(season_s=season_s).season_s == (season_s if season_s == "auto" else float(season_s))


@pytest.mark.parametrize("season_s", [0, 9.99, 30 * 86400 + 1, -86400, "daily"])
def test_season_lengths_outside_the_bounds_are_rejected(season_s):
    with pytest.raises(ValidationError):
        PredictiveSettings(season_s=season_s)


def test_an_integer_season_becomes_seconds_as_a_float():
    assert isinstance(PredictiveSettings.model_validate({"season_s": 60}).season_s, float)


def test_needing_more_seasons_than_the_history_keeps_is_rejected():
    with pytest.raises(ValidationError):
        PredictiveSettings(enabled=True, min_seasons=3, history_seasons=2)


@pytest.mark.parametrize("model", [AutoscalingSettings, PredictiveSettings])
def test_unknown_keys_are_rejected(model):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate({"tolerence": 0.2})


def test_unknown_keys_in_a_scaling_rule_are_rejected():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        settings(scale_up={"stabilization_s": 0, "max_pods": 2})


@pytest.mark.parametrize("bad", [{"target": math.inf}, {"target": math.nan}, {"tolerance": 1.0}, {"target": 0},
                                 {"decision_s": 0}, {"panic_threshold": 1.0}, {"priority": 101}])
def test_out_of_range_numbers_are_rejected(bad):
    with pytest.raises(ValidationError):
        settings(**bad)


def test_settings_are_frozen():
    s = AutoscalingSettings()
    with pytest.raises(ValidationError):
        s.target = 5  # type: ignore[misc]


@pytest.mark.parametrize(("max_replicas", "max_percent", "start", "allowed"), [
    (4, 100, 1, 4),  # the replica limit is the larger one for a small count
    (4, 100, 10, 10),  # the percentage is the larger for a large count
    (2, None, 10, 2),
    (None, 50, 10, 5),
    (None, 50, 3, 1),  # a percentage rounds down ...
    (None, 10, 5, 1),  # ... but allows at least one
    (None, 100, 0, 1),  # from zero
    (None, None, 10, None),  # no limit at all
])
def test_a_rule_allows_the_larger_of_its_two_limits_per_period(max_replicas, max_percent, start, allowed):
    rule = ScalingRule(stabilization_s=0, max_replicas=max_replicas, max_percent=max_percent)
    assert rule.allowed(start) == allowed


@pytest.mark.parametrize("direction", ["scale_up", "scale_down"])
def test_giving_one_limit_replaces_both_defaults_as_hpa_policies_do(direction):
    rule = getattr(AutoscalingSettings(**{direction: {"max_replicas": 1}}), direction)
    assert (rule.max_replicas, rule.max_percent, rule.allowed(10)) == (1, None, 1)


@pytest.mark.parametrize(("direction", "stabilization_s"), [("scale_up", 0.0), ("scale_down", 300.0)])
def test_a_rule_given_only_its_period_keeps_its_directions_defaults(direction, stabilization_s):
    rule = getattr(AutoscalingSettings(**{direction: {"period_s": 60}}), direction)
    assert (rule.period_s, rule.stabilization_s) == (60.0, stabilization_s)
    assert rule.max_percent == 100.0


# --- the reactive rule ----------------------------------------------------------------------------


def test_mean_over_takes_the_readings_within_the_window():
    readings = (Reading(NOW - 90, 100, 100), Reading(NOW - 30, 4, 2), Reading(NOW, 8, 6))
    assert mean_over(readings, NOW, 60) == (6.0, 4.0)
    assert mean_over(readings, NOW, 5) == (8.0, 6.0)
    assert mean_over(readings, NOW + 200, 60) is None


@pytest.mark.parametrize(("load", "target", "replicas"), [
    (9.1, 2, 5), (10, 2, 5), (10.2, 2, 6), (55, 10, 6), (0.5, 2, 1), (3, 0.5, 6),
])
def test_the_count_is_the_load_over_the_target_rounded_up(load, target, replicas):
    decision = decide(snapshot(load, current=20), ScalingState(), settings(target=target, **NO_SCALE_DOWN_WINDOW))
    assert (decision.replicas, decision.reactive) == (replicas, replicas)


def test_a_rounding_error_over_a_whole_count_does_not_add_a_replica():
    decision = decide(snapshot(10.000000001, current=1), ScalingState(), settings(**NO_PANIC))
    assert decision.reactive == 5


@pytest.mark.parametrize("load", [9.0, 9.5, 10.0, 10.5, 10.99])
def test_no_change_while_the_load_is_within_the_tolerance(load):
    decision = decide(snapshot(load, current=10), ScalingState(), settings(target=1, **NO_SCALE_DOWN_WINDOW))
    assert decision.replicas == 10
    assert "within 10% of 10 x target 1" in decision.reason


@pytest.mark.parametrize(("load", "replicas"), [(8.8, 9), (11.2, 12)])
def test_a_load_just_outside_the_tolerance_changes_the_count(load, replicas):
    decision = decide(snapshot(load, current=10), ScalingState(), settings(target=1, **NO_SCALE_DOWN_WINDOW))
    assert decision.replicas == replicas


@pytest.mark.parametrize("load", [9.0, 11.0])
def test_a_load_exactly_at_the_tolerance_edge_is_within_it(load):
    decision = decide(snapshot(load, current=10), ScalingState(), settings(target=1, **NO_SCALE_DOWN_WINDOW))
    assert decision.replicas == 10


def test_shed_and_queued_calls_are_part_of_the_load_and_scale_like_served_ones():
    # The policy sees one number: calls waiting or shed at the gateways are added into ``load`` by the caller.
    served, shed = 6.0, 14.0
    only_served = decide(snapshot(served, current=1), ScalingState(), settings(**NO_PANIC))
    with_shed = decide(snapshot(served + shed, current=1), ScalingState(), settings(**NO_PANIC))
    assert (only_served.reactive, with_shed.reactive) == (3, 10)


# --- bounds -------------------------------------------------------------------------------------


def test_the_count_is_held_at_max_and_the_reason_says_so():
    decision = decide(snapshot(100, current=6, max_replicas=8), ScalingState(), settings(**NO_PANIC))
    assert (decision.replicas, decision.reactive, decision.limited_by) == (8, 50, "max")
    assert decision.reason.endswith("held at max 8")


@pytest.mark.parametrize("min_replicas", [1, 3])
def test_no_load_keeps_the_minimum(min_replicas):
    decision = decide(snapshot(0, current=6, min_replicas=min_replicas), ScalingState(),
                      settings(**NO_SCALE_DOWN_WINDOW))
    assert decision.replicas == min_replicas


@pytest.mark.parametrize(("current", "min_replicas", "max_replicas", "overrides", "state"), [
    (10, 1, 5, {}, ScalingState(recommendations=((NOW - 10, 10),))),  # the scale-down window remembers 10
    (10, 1, 5, {"scale_down": ScalingRule(stabilization_s=0, max_replicas=1, max_percent=None)}, ScalingState()),
    (1, 3, 10, {"scale_up": ScalingRule(stabilization_s=60)}, ScalingState(recommendations=((NOW - 10, 1),))),
    (1, 10, 20, NO_PANIC, ScalingState()),  # the +4 per 15 s rate limit
], ids=["above-max-window", "above-max-rate-limit", "below-min-window", "below-min-rate-limit"])
def test_a_count_outside_the_bounds_is_brought_within_them_at_once(current, min_replicas, max_replicas, overrides,
                                                                  state):
    decision = decide(snapshot(0.5 * current, current=current, min_replicas=min_replicas, max_replicas=max_replicas),
                      state, settings(**overrides))
    assert min_replicas <= decision.replicas <= max_replicas


def test_panic_mode_does_not_hold_the_count_above_max():
    decision = decide(snapshot(100, current=10, ready=2, max_replicas=5), ScalingState(), AutoscalingSettings())
    assert decision.panic and decision.replicas == 5


# --- no readings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "kept"), [(3, 3), (0, 1), (12, 8)])
def test_without_readings_the_count_is_kept_within_the_bounds(current, kept):
    snap = Snapshot(now=NOW, current=current, ready=current, min_replicas=1, max_replicas=8, readings=())
    decision = decide(snap, ScalingState(), AutoscalingSettings())
    assert (decision.replicas, decision.reason) == (kept, "no load readings yet")


def test_readings_older_than_the_window_count_as_none():
    old = steady(50, now=NOW - 120)
    decision = decide(snapshot(old, current=3), ScalingState(), AutoscalingSettings())
    assert (decision.replicas, decision.reason) == (3, "no load readings yet")


def test_readings_in_the_window_but_none_in_the_panic_window_count_as_none():
    # Surprising: 30 s of readings ending 10 s ago are ignored, not averaged, as the short window is empty.
    readings = steady(50, now=NOW - 10, for_s=30)
    decision = decide(snapshot(readings, current=3), ScalingState(), AutoscalingSettings())
    assert decision.reason == "no load readings yet"


def test_calls_waiting_at_zero_wake_the_deployment_even_before_any_reading():
    snap = Snapshot(now=NOW, current=0, ready=0, min_replicas=0, max_replicas=8, readings=(), waiting=3)
    assert decide(snap, ScalingState(), AutoscalingSettings()).replicas >= 1


# --- stabilisation --------------------------------------------------------------------------------


def test_scale_up_goes_to_the_lowest_recommendation_of_its_window():
    state = ScalingState(recommendations=((NOW - 40, 2), (NOW - 20, 4), (NOW - 10, 7)))
    decision = decide(snapshot(16, current=2), state, settings(scale_up=ScalingRule(stabilization_s=30), **NO_PANIC))
    assert (decision.replicas, decision.reactive, decision.limited_by) == (4, 8, "stabilisation")
    assert "4 by the 30 s scale-up window" in decision.reason


def test_scale_down_goes_to_the_highest_recommendation_of_its_window():
    state = ScalingState(recommendations=((NOW - 400, 9), (NOW - 200, 6), (NOW - 100, 4)))
    decision = decide(snapshot(2, current=8), state, AutoscalingSettings())
    assert (decision.replicas, decision.reactive, decision.limited_by) == (6, 1, "stabilisation")
    assert "6 by the 300 s scale-down window" in decision.reason


def test_a_rise_is_followed_once_it_lasted_the_scale_up_window():
    driver = Driver(settings(window_s=6, scale_up=ScalingRule(stabilization_s=30), **NO_PANIC))
    driver.run(60, load=2)
    driver.run(60, load=16)
    assert driver.counts(since=60)[:5] == [1] * 5  # the window still holds a 1 ...
    assert driver.replicas == 8  # ... until 30 s of recommendations ask for more


def test_a_brief_dip_does_not_scale_in():
    driver = Driver(replicas=8)
    driver.run(120, load=16)
    driver.run(60, load=2)
    driver.run(120, load=16)
    assert set(driver.counts()) == {8}


def test_a_sustained_dip_scales_in_once_it_lasted_the_scale_down_window():
    driver = Driver(replicas=8)
    driver.run(120, load=16)
    driver.run(300, load=2)
    assert set(driver.counts()) == {8}  # all of the 300 s window remembers a recommendation of 8
    driver.run(70, load=2)  # the last of them (the 60 s load mean still high) leaves the window
    assert driver.replicas == 1


def test_a_restarted_autoscaler_does_not_scale_in_on_its_first_decision():
    decision = decide(snapshot(2, current=8), ScalingState(), AutoscalingSettings())
    assert decision.replicas == 8


# --- rate limits ----------------------------------------------------------------------------------


def test_scale_up_adds_at_most_four_or_a_hundred_percent_per_fifteen_seconds():
    driver = Driver(settings(**NO_PANIC))
    driver.run(75, load=100)
    # every 15 s: 1 -> 5 (+4) -> 10 (+100 %) -> 20 -> 40 -> 50 (the load's count)
    assert driver.counts()[::3] == [5, 10, 20, 40, 50]
    assert driver.history[1][1].limited_by == "rate limit"
    assert "at most +4 per 15 s" in driver.history[0][1].reason


def test_scale_down_is_held_to_its_rule_per_period():
    one_a_minute = ScalingRule(stabilization_s=0, period_s=60, max_replicas=1, max_percent=None)
    driver = Driver(settings(scale_down=one_a_minute), replicas=10)
    driver.run(180, load=0)
    assert driver.counts()[::12] == [9, 8, 7]
    assert "at most -1 per 60 s" in driver.history[1][1].reason


@pytest.mark.parametrize(("recorded", "replicas"), [(None, 10), ((1, 5), 5), ((1, 3), 5)],
                         ids=["no-change-recorded", "change-recorded", "capacity-cut-the-change"])
def test_the_period_counts_the_changes_recorded_with_applied(recorded, replicas):
    state = ScalingState()
    if recorded is not None:
        state = applied(state, NOW - 5, recorded[0], recorded[1], AutoscalingSettings())
    current = recorded[1] if recorded else 5
    decision = decide(snapshot(100, current=current), state, settings(**NO_PANIC))
    assert decision.replicas == replicas


def test_applied_records_a_change_and_forgets_those_older_than_the_longest_period():
    s = settings(scale_down=ScalingRule(stabilization_s=0, period_s=60))
    state = applied(ScalingState(), 0, 1, 5, s)
    state = applied(state, 10, 5, 5, s)  # no change: nothing recorded
    assert state.changes == ((0, 4),)
    state = applied(state, 50, 5, 3, s)
    assert state.changes == ((0, 4), (50, -2))
    assert applied(state, 70, 3, 3, s).changes == ((50, -2),)


def test_applied_keeps_everything_else_in_the_state():
    state = ScalingState(recommendations=((1.0, 3),), panic_since=2.0, calm_since=3.0, load_per_call=0.5)
    after = applied(state, 4.0, 3, 4, AutoscalingSettings())
    assert (after.recommendations, after.panic_since, after.calm_since, after.load_per_call) == \
           (((1.0, 3),), 2.0, 3.0, 0.5)


# --- panic mode -----------------------------------------------------------------------------------


def burst(calm: float, short: float) -> tuple[Reading, ...]:
    """``calm`` then ``short`` for the panic window (its readings from ``now - 6`` to ``now``, both ends in)."""
    return steady(calm, now=NOW - 7, for_s=53) + steady(short, for_s=7)


def test_a_burst_over_twice_the_ready_capacity_scales_up_at_once_on_the_short_window():
    slow_up = settings(scale_up=ScalingRule(stabilization_s=60, max_replicas=1, max_percent=None))
    state = ScalingState(recommendations=((NOW - 30, 2),))
    decision = decide(snapshot(burst(2, 40), current=2), state, slow_up)
    assert decision.panic
    assert (decision.replicas, decision.limited_by) == (20, "")  # past the window and the +1 rate limit
    assert decision.reason.startswith("panic: load 40 calls in flight (6 s) over 2x the capacity of 2 ready")


@pytest.mark.parametrize(("short", "panic"), [(8.0, False), (8.1, True)])
def test_panic_starts_only_above_the_threshold_times_the_ready_capacity(short, panic):
    assert decide(snapshot(burst(4, short), current=2), ScalingState(), AutoscalingSettings()).panic is panic


def test_panic_measures_the_ready_replicas_not_those_asked_for():
    decision = decide(snapshot(5, current=10, ready=1), ScalingState(), AutoscalingSettings())
    assert decision.panic


def test_no_scale_down_while_in_panic():
    state = ScalingState(panic_since=NOW - 20)
    decision = decide(snapshot(burst(2, 4), current=10), state, settings(**NO_SCALE_DOWN_WINDOW))
    assert decision.panic
    assert (decision.replicas, decision.limited_by) == (10, "panic")
    assert "no scale-down in panic mode" in decision.reason


def test_panic_ends_after_a_whole_stable_window_of_calm():
    driver = Driver(settings(**NO_SCALE_DOWN_WINDOW), replicas=2)
    driver.run(60, load=4)
    driver.run(10, load=40)
    peak = driver.replicas
    assert driver.history[-1][1].panic and peak >= 15
    driver.run(120, load=4)
    calm_since = next(d.state.calm_since for _, d in driver.history if d.state.calm_since is not None)
    ended_at = next(t for t, d in driver.history if t > calm_since and not d.panic)
    assert ended_at == calm_since + 60  # the stable window
    assert {d.replicas for t, d in driver.history if calm_since <= t < ended_at} == {peak}  # no scale-down in panic
    assert driver.replicas == 2


def test_a_new_burst_restarts_the_calm_clock():
    driver = Driver(settings(**NO_SCALE_DOWN_WINDOW), replicas=2)
    driver.run(60, load=4)
    driver.run(10, load=40)
    driver.run(50, load=4)
    driver.ready = 2  # the new replicas are still starting: the burst is again over their capacity
    driver.run(5, load=400)
    driver.ready = None
    assert driver.history[-1][1].state.calm_since is None
    calm = driver.run(60, load=4)
    assert all(d.panic for d in calm)


# --- predictive scaling ---------------------------------------------------------------------------


def rps(**overrides: object) -> AutoscalingSettings:
    return settings(metric="rps", target=10, predictive={"enabled": True}, **NO_PANIC, **overrides)


def test_a_reliable_forecast_above_the_load_raises_the_count():
    decision = decide(snapshot(20, current=2, forecast=reliable(55)), ScalingState(), rps())
    assert (decision.replicas, decision.reactive, decision.predicted) == (6, 2, 6)
    assert decision.reason.startswith("forecast 55 calls/s in 15 s")
    assert "the load now asks 2" in decision.reason
    assert decision.predictive_note == "forecast 55 calls/s in 15 s (forecast error 8%)"


def test_an_unreliable_forecast_is_ignored_and_the_note_says_why():
    forecast = Forecast(500, False, "forecast error 80% over the last 7 s (limit 30%)", 15)
    decision = decide(snapshot(20, current=2, forecast=forecast), ScalingState(), rps())
    assert (decision.replicas, decision.predicted) == (2, None)
    assert decision.predictive_note == "reactive only: forecast error 80% over the last 7 s (limit 30%)"
    assert "forecast" not in decision.reason


@pytest.mark.parametrize("forecast_rate", [0, 5, 30, 59])
def test_a_forecast_never_lowers_the_count_below_what_the_load_asks(forecast_rate):
    decision = decide(snapshot(60, current=6, forecast=reliable(forecast_rate)), ScalingState(), rps())
    assert decision.replicas == 6


def test_without_predictive_scaling_there_is_no_note():
    decision = decide(snapshot(20, current=2), ScalingState(), rps())
    assert (decision.predicted, decision.predictive_note) == (None, "")


def test_a_forecast_raise_is_held_at_max():
    decision = decide(snapshot(20, current=2, max_replicas=4, forecast=reliable(90)), ScalingState(), rps())
    assert (decision.replicas, decision.limited_by) == (4, "max")
    assert "held at max 4" in decision.reason


def inflight(**overrides: object) -> AutoscalingSettings:
    up_at_once = ScalingRule(stabilization_s=0, max_replicas=None, max_percent=None)
    return settings(metric="inflight", target=2, predictive={"enabled": True}, scale_up=up_at_once, **NO_PANIC,
                    **overrides)


def test_calls_in_flight_per_call_rate_is_measured_by_littles_law():
    # 4 calls in flight at 8 calls/s: 0.5 in flight per call/s; 40 calls/s forecast -> 20 in flight -> 10 replicas
    decision = decide(snapshot(4, rate=8, current=2, forecast=reliable(40)), ScalingState(), inflight())
    assert (decision.reactive, decision.predicted, decision.replicas) == (2, 10, 10)
    assert decision.state.load_per_call == 0.5


def test_with_no_calls_arriving_the_remembered_load_per_call_is_used():
    state = ScalingState(load_per_call=0.5)
    decision = decide(snapshot(0, rate=0, current=2, forecast=reliable(40)), state, inflight())
    assert (decision.predicted, decision.replicas) == (10, 10)
    assert decision.state.load_per_call == 0.5


def test_with_no_call_ever_measured_the_forecast_cannot_be_used():
    decision = decide(snapshot(0, rate=0, current=2, forecast=reliable(40)), ScalingState(), inflight())
    assert decision.predicted is None
    assert decision.predictive_note == "reactive only: no calls yet to relate the load to the call rate"


def test_calls_per_second_need_no_measuring():
    decision = decide(snapshot(0, rate=0, current=1, forecast=reliable(40)), ScalingState(), rps())
    assert decision.predicted == 4


# --- scale to zero --------------------------------------------------------------------------------


def to_zero(**overrides: object) -> AutoscalingSettings:
    return settings(idle_s=120, **NO_SCALE_DOWN_WINDOW, **overrides)


def test_scale_to_zero_waits_idle_s_after_the_last_call():
    driver = Driver(to_zero(), replicas=2, min_replicas=0)
    driver.run(60, load=4)
    last_call = driver.now
    driver.run(300, load=0)
    zero_at = next(t for t, d in driver.history if d.replicas == 0)
    assert min(d.replicas for t, d in driver.history if t < zero_at) >= 1
    assert zero_at == last_call + 120
    assert next(d for t, d in driver.history if t == zero_at).reason.startswith("no calls for 120 s (idle_s 120)")


def test_scale_to_zero_with_the_default_scale_down_window_waits_idle_s():
    driver = Driver(AutoscalingSettings(), replicas=1, min_replicas=0)
    driver.run(60, load=2)
    driver.run(305, load=0)
    assert driver.replicas == 0


@pytest.mark.parametrize(("load", "waiting", "replicas", "reason"), [
    (0, 3, 1, "3 calls waiting: waking from zero"),
    (20, 0, 10, "calls arrive: waking"),
])
def test_calls_at_zero_wake_the_deployment_at_once(load, waiting, replicas, reason):
    slow_up = settings(scale_up=ScalingRule(stabilization_s=120, max_replicas=1, max_percent=None), **NO_PANIC)
    state = ScalingState(recommendations=((NOW - 60, 0),))
    decision = decide(snapshot(load, current=0, min_replicas=0, waiting=waiting, last_call_at=NOW), state, slow_up)
    assert decision.replicas == replicas
    assert decision.reason.startswith(reason)


def test_a_forecast_of_calls_keeps_one_replica_from_zero():
    snap = snapshot(0, rate=0, current=1, min_replicas=0, last_call_at=NOW - 3600, forecast=reliable(0.5))
    decision = decide(snap, ScalingState(), rps(**NO_SCALE_DOWN_WINDOW))
    assert decision.replicas == 1


def test_an_unreliable_forecast_of_calls_does_not_keep_a_replica():
    forecast = Forecast(50, False, "learning the load", 15)
    snap = snapshot(0, rate=0, current=1, min_replicas=0, last_call_at=NOW - 3600, forecast=forecast)
    decision = decide(snap, ScalingState(), rps(**NO_SCALE_DOWN_WINDOW))
    assert decision.replicas == 0


def test_a_deployment_never_called_may_rest_at_zero():
    decision = decide(snapshot(0, rate=0, current=0, min_replicas=0), ScalingState(), AutoscalingSettings())
    assert decision.replicas == 0 and decision.reason


# --- every decision explains itself ------------------------------------------------------------


def test_every_decision_over_a_varied_day_has_a_reason():
    driver = Driver(settings(idle_s=60, predictive={"enabled": True}), replicas=1, min_replicas=0, max_replicas=6)
    for load, for_s in [(0, 30), (3, 30), (40, 20), (4, 80), (0, 500)]:
        driver.run(for_s, load=load)
    driver.forecast = reliable(30)
    driver.run(30, load=1)
    driver.forecast = Forecast(0, False, "the last forecast is out of date", 15)
    driver.run(30, load=1)
    driver.waiting = 2
    driver.run(10, load=0)
    assert len(driver.history) == 146
    assert all(d.reason for _, d in driver.history)


# --- the Autoscaler -------------------------------------------------------------------------------


def test_observe_keeps_only_the_readings_of_the_stable_window():
    scaler = Autoscaler(settings(window_s=10, panic_window_s=5), start=0)
    for t in range(30):
        scaler.observe(t, load=1, rate=1, calls=1)
    assert [r.ts for r in scaler.readings] == list(range(19, 30))


def test_observe_clamps_negative_readings_to_zero():
    scaler = Autoscaler(AutoscalingSettings(), start=0)
    scaler.observe(1, load=-3, rate=-1, calls=0)
    assert scaler.readings[-1] == Reading(1, 0.0, 0.0)


def test_observe_remembers_when_a_call_last_arrived():
    scaler = Autoscaler(AutoscalingSettings(), start=0)
    scaler.observe(1, load=1, rate=1, calls=3)
    scaler.observe(2, load=0, rate=0, calls=0)
    assert scaler.last_call_at == 1


def test_idle_time_counts_from_when_the_autoscaler_began_to_watch():
    scaler = Autoscaler(AutoscalingSettings(), start=7)
    scaler.observe(8, load=0, rate=0, calls=0)
    assert scaler.last_call_at == 7


def test_a_fresh_autoscaler_keeps_a_replica_for_idle_s_before_scaling_to_zero():
    scaler = Autoscaler(settings(idle_s=120, **NO_SCALE_DOWN_WINDOW), start=1000)
    counts = {}
    for t in range(1001, 1200):
        scaler.observe(t, load=0, rate=0, calls=0)
        if scaler.due(t):
            counts[t] = scaler.decide(t, current=1, ready=1, min_replicas=0, max_replicas=4).replicas
    assert min(c for t, c in counts.items() if t < 1120) == 1
    assert {c for t, c in counts.items() if t >= 1120} == {0}


def test_a_deployment_at_zero_stays_there_without_calls_when_the_autoscaler_starts():
    scaler = Autoscaler(AutoscalingSettings(), start=0)
    scaler.observe(1, load=0, rate=0, calls=0)
    assert scaler.decide(1, current=0, ready=0, min_replicas=0, max_replicas=4).replicas == 0


def test_decide_carries_the_state_from_one_decision_to_the_next():
    scaler = Autoscaler(settings(**NO_PANIC), start=0)
    for t in range(1, 61):
        scaler.observe(t, load=100, rate=100, calls=100)
    first = scaler.decide(60, current=1, ready=1, min_replicas=1, max_replicas=64)
    assert (first.previous, first.replicas) == (1, 5)
    assert scaler.last is first and scaler.state is first.state
    scaler.applied(60, 1, 5)
    assert scaler.state.changes == ((60, 4),)
    scaler.observe(65, load=100, rate=100, calls=100)
    assert scaler.decide(65, current=5, ready=5, min_replicas=1, max_replicas=64).replicas == 5  # rate limited


def test_decide_hands_waiting_calls_to_the_policy():
    scaler = Autoscaler(AutoscalingSettings(), start=0)
    scaler.observe(1, load=0, rate=0, calls=0)
    decision = scaler.decide(1, current=0, ready=0, min_replicas=0, max_replicas=4, waiting=2)
    assert decision.replicas == 1 and "2 calls waiting" in decision.reason


def test_a_decision_is_due_every_decision_s():
    scaler = Autoscaler(settings(decision_s=5), start=0)
    assert scaler.due(0)
    scaler.observe(1, load=1, rate=1, calls=1)
    scaler.decide(1, current=1, ready=1, min_replicas=1, max_replicas=4)
    assert [scaler.due(t) for t in (1, 5.9, 6)] == [False, False, True]


def test_the_lead_defaults_to_the_start_up_time_plus_one_decision():
    scaler = Autoscaler(settings(decision_s=5), start=0)
    assert scaler.lead_s == DEFAULT_STARTUP_S + 5


def test_the_lead_follows_measured_start_up_times_smoothed():
    scaler = Autoscaler(settings(decision_s=5), start=0)
    scaler.started(20)
    assert scaler.lead_s == 25
    scaler.started(40)
    assert scaler.lead_s == pytest.approx(0.7 * 20 + 0.3 * 40 + 5)


def test_a_configured_lead_wins_over_the_measured_one():
    scaler = Autoscaler(settings(predictive={"lead_s": 90}), start=0)
    scaler.started(20)
    assert scaler.lead_s == 90


def test_without_predictive_scaling_there_is_no_forecaster_and_no_forecast():
    scaler = Autoscaler(AutoscalingSettings(), start=0)
    assert scaler.forecaster is None and scaler.forecast(10) is None


def test_an_automatic_season_not_yet_found_gives_an_unreliable_forecast():
    scaler = Autoscaler(settings(predictive={"enabled": True, "season_s": "auto"}), start=0)
    forecast = scaler.forecast(10)
    assert scaler.forecaster is None
    assert not forecast.reliable and forecast.rate == 0.0
    assert forecast.why.startswith("finding the season (season_s: auto): no clear period in the 0.0 h recorded")


def test_the_forecast_before_any_history_says_it_is_learning():
    scaler = Autoscaler(settings(predictive={"enabled": True, "season_s": 60}), start=0)
    scaler.observe(1, load=1, rate=1, calls=1)
    decision = scaler.decide(1, current=1, ready=1, min_replicas=1, max_replicas=4)
    assert decision.predictive_note.startswith("reactive only: learning the load")


def counted(scaler: Autoscaler, seconds: int) -> Autoscaler:
    for t in range(seconds):
        scaler.observe(t, load=1, rate=1, calls=1)
    return scaler


PREDICTIVE_60 = {"enabled": True, "season_s": 60.0}


@pytest.mark.parametrize("change", [{"max_error": 0.5}, {"min_seasons": 2.0}, {"lead_s": 30.0}])
def test_reconfiguring_the_forecast_keeps_its_history(change):
    scaler = counted(Autoscaler(settings(predictive=PREDICTIVE_60), start=0), 90)
    forecaster = scaler.forecaster
    scaler.reconfigure(settings(predictive={**PREDICTIVE_60, **change}), now=90)
    assert scaler.forecaster is forecaster and len(forecaster.series.rates) == 89
    assert forecaster.settings == scaler.settings.predictive


def test_reconfiguring_other_settings_keeps_the_forecaster_the_readings_and_the_state():
    scaler = counted(Autoscaler(settings(predictive=PREDICTIVE_60), start=0), 90)
    scaler.decide(89, current=1, ready=1, min_replicas=1, max_replicas=4)
    forecaster, readings, state = scaler.forecaster, list(scaler.readings), scaler.state
    scaler.reconfigure(settings(predictive=PREDICTIVE_60, target=5, tolerance=0.2), now=90)
    assert (scaler.forecaster, list(scaler.readings), scaler.state) == (forecaster, readings, state)
    assert scaler.settings.target == 5


def test_a_new_season_resets_the_forecaster():
    scaler = counted(Autoscaler(settings(predictive=PREDICTIVE_60), start=0), 90)
    scaler.reconfigure(settings(predictive={**PREDICTIVE_60, "season_s": 120.0}), now=90)
    assert scaler.forecaster is not None
    assert (scaler.forecaster.season_s, len(scaler.forecaster.series.rates), scaler.forecaster.series.origin) == \
           (120.0, 0, 90)


@pytest.mark.parametrize(("before", "after", "has_forecaster"), [
    ({"enabled": False}, PREDICTIVE_60, True),
    (PREDICTIVE_60, {"enabled": False}, False),
    (PREDICTIVE_60, {"enabled": True, "season_s": "auto"}, False),
])
def test_turning_predictive_scaling_on_or_off_makes_or_drops_the_forecaster(before, after, has_forecaster):
    scaler = counted(Autoscaler(settings(predictive=before), start=0), 30)
    scaler.reconfigure(settings(predictive=after), now=30)
    assert (scaler.forecaster is not None) is has_forecaster


def test_a_shorter_history_applies_to_a_kept_forecaster():
    scaler = Autoscaler(settings(predictive={**PREDICTIVE_60, "history_seasons": 7}), start=0)
    scaler.reconfigure(settings(predictive={**PREDICTIVE_60, "history_seasons": 2}), now=0)
    counted(scaler, 300)
    assert scaler.forecaster is not None and scaler.forecaster.seasons_seen <= 2
