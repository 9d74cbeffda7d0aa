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


@dataclass(frozen=True)
class _Panic:
    on: bool
    over: bool  # the short window is over the threshold now
    since: float | None
    calm_since: float | None


@dataclass(frozen=True)
class _Prediction:
    replicas: int | None  # what the forecast asks for (held for its lead time), None: not used
    note: str
    per_call: float | None  # load one call/s brings
    held: tuple[tuple[float, int], ...]  # the forecast's recent asks, kept in the state
    fresh: bool  # ``replicas`` is this decision's own forecast, not a held one


@dataclass(frozen=True)
class _Zero:
    floor: int  # fewest replicas now (1 while a min-0 deployment is in use)
    waking: bool
    idle_why: str | None  # set: idle for idle_s with nothing in flight or forecast, go to zero


def decide(snap: Snapshot, state: ScalingState, settings: AutoscalingSettings) -> Decision:
    """The replica count for now, with the reason a person reads in events and ``steady status``."""
    now, current = snap.now, snap.current
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
    panic = _panic(snap, state, settings, short_load)
    reactive, why = _reactive(snap, settings, load, short_load, panic)
    prediction = _prediction(snap, state, settings, load, rate)
    zero = _zero(snap, settings, short_load, prediction.replicas)
    if zero.waking:
        why = f"{plural(snap.waiting, 'call')} waiting: waking from zero" if snap.waiting \
            else "calls arrive: waking from zero"

    def bounded(count: int) -> int:
        return max(zero.floor, min(snap.max_replicas, count))

    goal, recs, limited_by, why = _stabilised(snap, state, settings, bounded(reactive), panic.on or zero.waking,
                                              panic.on, why)
    if prediction.replicas is not None and bounded(prediction.replicas) > goal:
        goal, limited_by = bounded(prediction.replicas), ""
        why = _forecast_reason(snap, settings, prediction, reactive)
    if goal == snap.max_replicas and max(reactive, prediction.replicas or 0) > goal:
        limited_by = "max"
        why = f"{why}; held at max {snap.max_replicas}"
    new, limit_why = _rate_limited(snap, state, settings, goal, panic.on or zero.waking)
    if limit_why:
        limited_by, why = "rate limit", f"{why} -> {goal}; {limit_why}"
    # The bounds hold at once (a changed spec), and an idle deployment goes to zero at once.
    low, high = snap.min_replicas, snap.max_replicas
    if zero.idle_why is not None and current > 0:
        new, limited_by, why = 0, "", zero.idle_why
    elif new > high or new < low:
        new = max(low, min(high, new))
        limited_by = "max" if new == high else ""
        why = f"{why}; held within the bounds {low}..{high}"
    next_state = ScalingState(recommendations=recs, changes=state.changes, panic_since=panic.since,
                              calm_since=panic.calm_since, load_per_call=prediction.per_call,
                              predictions=prediction.held)
    return Decision(new, why, next_state, reactive, prediction.replicas, prediction.note, panic.on, limited_by,
                    previous=current)


def _panic(snap: Snapshot, state: ScalingState, settings: AutoscalingSettings, short_load: float) -> _Panic:
    """Knative's panic mode: on while the short window's load exceeds the threshold times what the
    ready replicas carry; off once a whole stable window has been calm."""
    capacity = max(snap.ready, 0) * settings.target_value
    over = short_load > settings.panic_threshold * capacity + _EPSILON and short_load > 0
    since, calm_since = state.panic_since, state.calm_since
    if over:
        since = since if since is not None else snap.now
        calm_since = None
    elif since is not None:
        calm_since = calm_since if calm_since is not None else snap.now
        if snap.now - calm_since >= settings.window_s:
            since = calm_since = None
    return _Panic(since is not None, over, since, calm_since)


def _reactive(snap: Snapshot, settings: AutoscalingSettings, load: float, short_load: float,
              panic: _Panic) -> tuple[int, str]:
    """ceil(load / target), nothing within the tolerance; in panic, the short window when it asks more."""
    current, target, unit = snap.current, settings.target_value, METRIC_UNITS[settings.metric]
    ratio = load / (current * target) if current > 0 else math.inf
    if current > 0 and abs(ratio - 1.0) <= settings.tolerance + 1e-9:
        reactive = current
        why = f"load {_fmt(load)} {unit} ({settings.window_s:g} s) is within {settings.tolerance:.0%} of" \
              f" {current} x target {_fmt(target)}"
    else:
        reactive = _ceil(load / target)
        why = f"load {_fmt(load)} {unit} ({settings.window_s:g} s) / target {_fmt(target)} per replica"
    if not panic.on:
        return reactive, why
    short_s = settings.short_window_s
    if panic.over:
        said = f"panic: load {_fmt(short_load)} {unit} ({short_s:g} s) over {settings.panic_threshold:g}x" \
               f" the capacity of {plural(snap.ready, 'ready replica')}"
    else:
        calm_s = snap.now - panic.calm_since if panic.calm_since is not None else 0.0
        said = f"panic mode until the load stays under {settings.panic_threshold:g}x the capacity for" \
               f" {settings.window_s:g} s (calm for {calm_s:.0f} s)"
    short_need = _ceil(short_load / target)
    if short_need > reactive:
        return short_need, f"{said}; load {_fmt(short_load)} {unit} ({short_s:g} s) / target {_fmt(target)} per replica"
    return reactive, f"{said}; {why}"


def _prediction(snap: Snapshot, state: ScalingState, settings: AutoscalingSettings, load: float,
                rate: float) -> _Prediction:
    """The forecast rate when new replicas would be ready, in replicas. A forecast's ask stays for its
    lead time: the rise it foresaw is due within it, and a forecast that wavers from one decision to
    the next must not start and stop replicas."""
    now, target = snap.now, settings.target_value
    predicted, note, per_call = None, "", _load_per_call(settings, load, rate) or state.load_per_call
    fc = snap.forecast
    if fc is not None:
        if not fc.reliable:
            note = f"reactive only: {fc.why}"
        elif per_call is None:
            note = "reactive only: no calls yet to relate the load to the call rate"
        else:
            predicted = _ceil(fc.rate * per_call / target)
            note = f"forecast {_fmt(fc.rate)} calls/s in {fc.lead_s:.0f} s ({fc.why})"
    hold_s = fc.lead_s if fc is not None else 0.0
    held = tuple((t, p) for t, p in state.predictions if t > now - hold_s)
    if predicted is not None:
        held += ((now, predicted),)
    most = max((p for _, p in held), default=None)
    if most is not None and (predicted is None or most > predicted):
        return _Prediction(most, f"{note}; holding the forecast's {most} for {hold_s:.0f} s", per_call, held, False)
    return _Prediction(predicted, note, per_call, held, predicted is not None)


def _forecast_reason(snap: Snapshot, settings: AutoscalingSettings, prediction: _Prediction, reactive: int) -> str:
    fc = snap.forecast
    assert fc is not None and prediction.replicas is not None
    if not prediction.fresh:
        return f"a forecast of the last {fc.lead_s:.0f} s asked for {prediction.replicas} (the load now asks {reactive})"
    return f"forecast {_fmt(fc.rate)} calls/s in {fc.lead_s:.0f} s x {_fmt(prediction.per_call or 0)}" \
           f" {METRIC_UNITS[settings.metric]} per call/s / target {_fmt(settings.target_value)}" \
           f" (the load now asks {reactive})"


def _zero(snap: Snapshot, settings: AutoscalingSettings, short_load: float, predicted: int | None) -> _Zero:
    """Scale to zero (``min: 0``): in use, at least one; after idle_s without a call, with nothing in flight
    and nothing forecast, zero (the idle period was its stabilisation); at zero, any demand wakes it."""
    if snap.min_replicas > 0:
        return _Zero(snap.min_replicas, False, None)
    idle_s = snap.now - snap.last_call_at if snap.last_call_at is not None else math.inf
    # Demand now (the short window), not the stable window's average, which remembers a call for window_s.
    demand = snap.waiting > 0 or snap.busy > 0 or short_load > 0 or (predicted or 0) > 0
    if demand or (idle_s < settings.idle_s and snap.current > 0):
        return _Zero(1, snap.current == 0 and demand, None)
    idle = f"no calls for {idle_s:.0f} s" if math.isfinite(idle_s) else "no calls"
    return _Zero(0, False, f"{idle} (idle_s {settings.idle_s:g}): scaling to zero")


def _stabilised(snap: Snapshot, state: ScalingState, settings: AutoscalingSettings, wanted: int, at_once: bool,
                panic: bool, why: str) -> tuple[int, tuple[tuple[float, int], ...], str, str]:
    """HPA stabilisation of the load's recommendation: up to the lowest, down to the highest of each
    direction's window (none when ``at_once``; no scale-down in panic). A fresh state (a new or
    restarted controller) remembers the current count, as the HPA does: a restart is not a reason to
    scale down at once. Returns the goal, the recommendations to keep, what limited it and the reason."""
    now, current = snap.now, snap.current
    keep_s = max(settings.scale_up.stabilization_s, settings.scale_down.stabilization_s)
    earlier = state.recommendations or ((now - _EPSILON, current),)
    recs = tuple((t, r) for t, r in earlier if t > now - keep_s) + ((now, wanted),)
    goal = wanted
    if wanted > current and not at_once:
        goal = max(current, min(r for t, r in recs if t > now - settings.scale_up.stabilization_s or t == now))
    elif wanted < current:
        goal = current if panic else min(current, max(r for t, r in recs
                                                     if t > now - settings.scale_down.stabilization_s or t == now))
    if goal == wanted:
        return goal, recs, "", why
    direction = "up" if wanted > current else "down"
    if panic and direction == "down":
        return goal, recs, "panic", f"{why} -> {wanted}; no scale-down in panic mode"
    rule = settings.scale_up if direction == "up" else settings.scale_down
    return goal, recs, "stabilisation", \
        f"{why} -> {wanted}; {goal} by the {rule.stabilization_s:g} s scale-{direction} window"


def _rate_limited(snap: Snapshot, state: ScalingState, settings: AutoscalingSettings, goal: int,
                  at_once: bool) -> tuple[int, str]:
    """At most so many replicas added (not in panic, not waking from zero) or removed per period."""
    now, current = snap.now, snap.current
    if goal > current and not at_once:
        start = _start_count(state, now, current, settings.scale_up.period_s)
        allowed = settings.scale_up.allowed(start)
        if allowed is not None and goal > start + allowed:
            return max(current, start + allowed), f"at most +{allowed} per {settings.scale_up.period_s:g} s"
    elif goal < current:
        start = _start_count(state, now, current, settings.scale_down.period_s)
        allowed = settings.scale_down.allowed(start)
        if allowed is not None and goal < start - allowed:
            return min(current, start - allowed), f"at most -{allowed} per {settings.scale_down.period_s:g} s"
    return goal, ""


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
