"""How many replicas a deployment should run: a pure function of its load, its state and its settings.

    decision = decide(snapshot, state, settings)
    decision.replicas, decision.reason        # 5, "load 9.1 calls in flight (60 s) / target 2 -> 5"
    state = decision.state                     # handed back at the next decision

The reactive part is the Kubernetes HPA's: ``ceil(load / target)``, nothing within the tolerance,
each direction's recommendation stabilised over its window (scale-up to the lowest of its window,
scale-down to the highest), and at most so many replicas added or removed per period. Panic mode
is Knative's: when the short window's load exceeds ``panic_threshold`` times what the replicas can
carry, scale up on the short window at once and do not scale down until a whole stable window has
been calm. The predictive part sizes for the largest call rate forecast within the lead time
(``forecast.Forecast``) when the forecast is reliable, never for less than the reactive part asks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..wording import plural
from .settings import METRIC_UNITS, AutoscalingSettings

_EPSILON = 1e-9


@dataclass(frozen=True)
class Reading:
    """One look at a deployment's load. ``load``: all its replicas together, in the metric's unit,
    calls waiting and shed at the gateways counted as demand; ``rate``: calls/s arriving (shed too)."""

    ts: float
    load: float
    rate: float


@dataclass(frozen=True)
class Forecast:
    """What the traffic model says about the next ``lead_s`` seconds."""

    rate: float  # the highest call rate forecast within the lead time (calls/s)
    reliable: bool
    why: str  # "forecast error 8% (limit 30%)", "only 0.4 of the 1 season of history needed", ...
    lead_s: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    now: float
    current: int  # replicas asked for by the last decision
    ready: int  # of them, serving now
    min_replicas: int
    max_replicas: int
    readings: Sequence[Reading]  # oldest first; at least the stable window's
    forecast: Forecast | None = None  # None: predictive scaling is off
    last_call_at: float | None = None  # scale to zero: when a call last arrived
    waiting: int = 0  # calls held at the gateways for want of any replica (at zero)
    busy: float = 0.0  # calls in flight in the replicas now, whatever the metric: none is cut short by a scale to zero


@dataclass(frozen=True)
class ScalingState:
    """What the autoscaler remembers between decisions."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, replicas) within the stabilisation windows
    changes: tuple[tuple[float, int], ...] = ()  # (time, replicas added (+) or removed (-)) within the periods
    panic_since: float | None = None
    calm_since: float | None = None  # in panic: the short window has been under the threshold since
    load_per_call: float | None = None  # the last measured load one call/s brings (for forecasts at no load)
    predictions: tuple[tuple[float, int], ...] = ()  # (time, replicas) the forecast asked for, within its lead


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    state: ScalingState
    reactive: int  # what the load alone asks for
    predicted: int | None = None  # what the forecast asks for, when it is used
    predictive_note: str = ""  # why the forecast is used or not ("" with predictive scaling off)
    panic: bool = False
    limited_by: str = ""  # "", "max", "rate limit", "stabilisation", "panic" (capacity is decided later)
    previous: int = 0  # the count before this decision


def mean_over(readings: Sequence[Reading], now: float, window_s: float) -> tuple[float, float] | None:
    """Mean load and mean rate of the readings within ``window_s`` before ``now``; None without any."""
    inside = [r for r in readings if now - window_s <= r.ts <= now + _EPSILON]
    if not inside:
        return None
    return sum(r.load for r in inside) / len(inside), sum(r.rate for r in inside) / len(inside)


def _ceil(value: float) -> int:
    return math.ceil(value - 1e-6)  # 2.0000000001 is 2


def _fmt(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def decide(snap: Snapshot, state: ScalingState, settings: AutoscalingSettings) -> Decision:
    """The replica count for now, with the reason a person reads in events and ``steady status``."""
    now, current = snap.now, snap.current
    target = settings.target_value
    unit = METRIC_UNITS[settings.metric]
    stable = mean_over(snap.readings, now, settings.window_s)
    short = mean_over(snap.readings, now, settings.short_window_s)
    if stable is None or short is None:
        if current == 0 and snap.waiting > 0 and snap.max_replicas > 0:
            return Decision(1, f"{plural(snap.waiting, 'call')} waiting: waking from zero", state, 1,
                            previous=current)
        keep = max(snap.min_replicas, min(snap.max_replicas, current))
        return Decision(keep, "no load readings yet", state, keep, previous=current)
    load, rate = stable
    short_load = short[0]

    # Panic: the short window's load beyond what the ready replicas carry (Knative).
    capacity = max(snap.ready, 0) * target
    over = short_load > settings.panic_threshold * capacity + _EPSILON and short_load > 0
    panic_since, calm_since = state.panic_since, state.calm_since
    if over:
        panic_since = panic_since if panic_since is not None else now
        calm_since = None
    elif panic_since is not None:
        calm_since = calm_since if calm_since is not None else now
        if now - calm_since >= settings.window_s:
            panic_since = calm_since = None
    panic = panic_since is not None

    # Reactive: ceil(load / target), nothing within the tolerance.
    ratio = load / (current * target) if current > 0 else math.inf
    if current > 0 and abs(ratio - 1.0) <= settings.tolerance + 1e-9:
        reactive = current
        why = f"load {_fmt(load)} {unit} ({settings.window_s:g} s) is within {settings.tolerance:.0%} of" \
              f" {current} x target {_fmt(target)}"
    else:
        reactive = _ceil(load / target)
        why = f"load {_fmt(load)} {unit} ({settings.window_s:g} s) / target {_fmt(target)} per replica"
    if panic:
        short_s = settings.short_window_s
        if over:
            said = f"panic: load {_fmt(short_load)} {unit} ({short_s:g} s) over {settings.panic_threshold:g}x" \
                   f" the capacity of {plural(snap.ready, 'ready replica')}"
        else:
            calm_s = now - calm_since if calm_since is not None else 0.0
            said = f"panic mode until the load stays under {settings.panic_threshold:g}x the capacity for" \
                   f" {settings.window_s:g} s (calm for {calm_s:.0f} s)"
        short_need = _ceil(short_load / target)
        if short_need > reactive:
            reactive = short_need
            why = f"{said}; load {_fmt(short_load)} {unit} ({short_s:g} s) / target {_fmt(target)} per replica"
        else:
            why = f"{said}; {why}"

    # Predictive: the forecast rate when new replicas would be ready, in the metric's unit.
    predicted, note, per_call = None, "", _load_per_call(settings, load, rate) or state.load_per_call
    if snap.forecast is not None:
        fc = snap.forecast
        if not fc.reliable:
            note = f"reactive only: {fc.why}"
        elif per_call is None:
            note = "reactive only: no calls yet to relate the load to the call rate"
        else:
            predicted = _ceil(fc.rate * per_call / target)
            note = f"forecast {_fmt(fc.rate)} calls/s in {fc.lead_s:.0f} s ({fc.why})"
    # A forecast's replicas stay for its lead time: the rise it foresaw is due within it, and a
    # forecast that wavers from one decision to the next must not start and stop replicas.
    hold_s = snap.forecast.lead_s if snap.forecast is not None else 0.0
    predictions = tuple((t, p) for t, p in state.predictions if t > now - hold_s)
    if predicted is not None:
        predictions += ((now, predicted),)
    held = max((p for _, p in predictions), default=None)
    if held is not None and (predicted is None or held > predicted):
        predicted = held
        note = f"{note}; holding the forecast's {held} for {hold_s:.0f} s"

    # Scale to zero: only after idle_s without a call, and not with calls forecast.
    floor = snap.min_replicas
    waking = to_zero = False
    if snap.min_replicas == 0:
        idle_s = now - snap.last_call_at if snap.last_call_at is not None else math.inf
        # Demand now (the short window), not the stable window's average, which remembers a call for window_s.
        demand = snap.waiting > 0 or snap.busy > 0 or short_load > 0 or (predicted or 0) > 0
        if demand or (idle_s < settings.idle_s and current > 0):
            floor = 1
            if current == 0 and demand:
                waking = True
                why = f"{plural(snap.waiting, 'call')} waiting: waking from zero" if snap.waiting \
                    else "calls arrive: waking from zero"
        else:
            to_zero = current > 0  # the idle period was its stabilisation
            idle_why = f"no calls for {idle_s:.0f} s (idle_s {settings.idle_s:g}): scaling to zero" \
                if math.isfinite(idle_s) else f"no calls (idle_s {settings.idle_s:g}): scaling to zero"
            why = idle_why

    def bounded(count: int) -> int:
        return max(floor, min(snap.max_replicas, count))

    # Stabilisation of the load's recommendation (the forecast is smooth already): up to the lowest,
    # down to the highest of each direction's window.
    limited_by = ""
    wanted = bounded(reactive)
    keep_s = max(settings.scale_up.stabilization_s, settings.scale_down.stabilization_s)
    # A fresh state (a new or restarted controller) remembers the current count, as the HPA does:
    # a restart is not a reason to scale down at once.
    earlier = state.recommendations or ((now - _EPSILON, current),)
    recs = tuple((t, r) for t, r in earlier if t > now - keep_s) + ((now, wanted),)
    goal = wanted
    if wanted > current and not (panic or waking):
        goal = max(current, min(r for t, r in recs if t > now - settings.scale_up.stabilization_s or t == now))
    elif wanted < current:
        goal = current if panic else min(current, max(r for t, r in recs
                                                     if t > now - settings.scale_down.stabilization_s or t == now))
    if goal != wanted:
        direction = "up" if wanted > current else "down"
        rule = settings.scale_up if direction == "up" else settings.scale_down
        limited_by = "panic" if panic and direction == "down" else "stabilisation"
        why = f"{why} -> {wanted}; " + ("no scale-down in panic mode" if limited_by == "panic" else
                                       f"{goal} by the {rule.stabilization_s:g} s scale-{direction} window")
    if predicted is not None and bounded(predicted) > goal:
        goal = bounded(predicted)
        assert snap.forecast is not None
        why = f"forecast {_fmt(snap.forecast.rate)} calls/s in {snap.forecast.lead_s:.0f} s x {_fmt(per_call or 0)}" \
              f" {unit} per call/s / target {_fmt(target)} (the load now asks {reactive})" \
            if predictions and predictions[-1] == (now, predicted) else \
            f"a forecast of the last {hold_s:.0f} s asked for {predicted} (the load now asks {reactive})"
        limited_by = ""
    if goal == snap.max_replicas and max(reactive, predicted or 0) > goal:
        limited_by = "max"
        why = f"{why}; held at max {snap.max_replicas}"

    # Rate limits per period (not in panic, not waking from zero).
    new = goal
    if goal > current and not (panic or waking):
        start = _start_count(state, now, current, settings.scale_up.period_s)
        allowed = settings.scale_up.allowed(start)
        if allowed is not None and goal > start + allowed:
            new = max(current, start + allowed)
            limited_by = "rate limit"
            why = f"{why} -> {goal}; at most +{allowed} per {settings.scale_up.period_s:g} s"
    elif goal < current:
        start = _start_count(state, now, current, settings.scale_down.period_s)
        allowed = settings.scale_down.allowed(start)
        if allowed is not None and goal < start - allowed:
            new = min(current, start - allowed)
            limited_by = "rate limit"
            why = f"{why} -> {goal}; at most -{allowed} per {settings.scale_down.period_s:g} s"
    # The bounds hold at once (a changed spec), and an idle deployment goes to zero at once.
    low, high = snap.min_replicas, snap.max_replicas
    if to_zero:
        new, limited_by, why = 0, "", idle_why
    elif new > high or new < low:
        new = max(low, min(high, new))
        limited_by = "max" if new == high else ""
        why = f"{why}; held within the bounds {low}..{high}"
    next_state = ScalingState(recommendations=recs, changes=state.changes, panic_since=panic_since,
                              calm_since=calm_since, load_per_call=per_call, predictions=predictions)
    return Decision(new, why, next_state, reactive, predicted, note, panic, limited_by, previous=current)


def applied(state: ScalingState, now: float, before: int, after: int, settings: AutoscalingSettings) -> ScalingState:
    """The state once the count really changed (after the capacity budget): the rate limits count it."""
    keep_s = max(settings.scale_up.period_s, settings.scale_down.period_s)
    changes = tuple((t, d) for t, d in state.changes if t > now - keep_s)
    if after != before:
        changes += ((now, after - before),)
    return replace(state, changes=changes)


def _start_count(state: ScalingState, now: float, current: int, period_s: float) -> int:
    """The replica count at the start of the period: the changes within it undone."""
    return current - sum(d for t, d in state.changes if t > now - period_s)


def _load_per_call(settings: AutoscalingSettings, load: float, rate: float) -> float | None:
    """Load one call/s brings: 1 for calls/s; else measured now (Little's law for calls in flight)."""
    if settings.metric == "rps":
        return 1.0
    if rate <= _EPSILON or load <= 0:
        return None
    return load / rate
