"""An adaptive concurrency limit per replica that follows measured latency (pure).

A gradient policy in the spirit of Envoy's adaptive-concurrency filter and
Netflix's concurrency-limits: the no-load latency is the lowest one seen over
a sliding window; while recent latency stays within ``tolerance`` x that, the
limit grows by about one per ``limit`` samples (only when the limit was
actually used); above it, the limit shrinks in proportion to the excess, by at
most half per sample. So the calls a replica is given keep their latency near
its unloaded latency, and the excess is shed at the gateway instead of queued.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class GradientSettings:
    max_limit: int
    min_limit: int = 1
    initial_limit: float = 2.0
    tolerance: float = 1.5  # recent latency up to this x no-load latency counts as "not queueing"
    smoothing: float = 0.3  # weight of a new sample in the recent-latency average
    min_window_s: float = 30.0  # the no-load latency is the minimum over the last two such windows


@dataclass(frozen=True, slots=True)
class GradientState:
    limit: float
    recent_s: float | None = None  # smoothed recent latency
    min_s: float | None = None  # lowest latency in the current window
    previous_min_s: float | None = None  # lowest latency in the window before
    window_started: float = 0.0

    @property
    def whole_limit(self) -> int:
        return int(self.limit)


def initial_state(settings: GradientSettings, now: float) -> GradientState:
    return GradientState(limit=min(settings.initial_limit, settings.max_limit), window_started=now)


def _no_load_s(state: GradientState) -> float | None:
    known = [m for m in (state.min_s, state.previous_min_s) if m is not None]
    return min(known) if known else None


def on_sample(state: GradientState, latency_s: float, inflight_at_send: int, now: float,
              settings: GradientSettings) -> GradientState:
    """The next state after one answered call that took ``latency_s``.

    ``inflight_at_send``: calls in flight to this replica (from this gateway)
    when the call was sent, itself included; growth needs the limit to be in use.
    """
    if now - state.window_started >= settings.min_window_s:  # let the baseline follow a slower model
        state = replace(state, previous_min_s=state.min_s, min_s=None, window_started=now)
    min_s = latency_s if state.min_s is None else min(state.min_s, latency_s)
    recent_s = latency_s if state.recent_s is None else (
        state.recent_s + settings.smoothing * (latency_s - state.recent_s))
    state = replace(state, min_s=min_s, recent_s=recent_s)
    no_load_s = _no_load_s(state)
    assert no_load_s is not None
    allowed_s = no_load_s * settings.tolerance
    limit = state.limit
    if recent_s <= allowed_s:
        if inflight_at_send >= int(limit):
            limit += 1.0 / limit
    else:
        limit *= max(0.5, allowed_s / recent_s)
    return replace(state, limit=min(float(settings.max_limit), max(float(settings.min_limit), limit)))
