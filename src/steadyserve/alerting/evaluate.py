"""The alert state machine, pure: history, rules, states and ``now`` in; states and transitions out.

    inactive ──holds──> pending ──holds for `for`──> firing ──no longer holds──> resolved ──> inactive
        ^                  │                           (notified)                (notified)
        └──does not hold───┘  (nothing is notified)

A rule with ``for: 0`` fires on its first evaluation that holds. ``resolved`` lasts one
evaluation (the next one that does not hold makes it inactive, one that holds starts a new
pending). No data (None) does not hold: a firing alert whose series vanish resolves, as in
Prometheus. A firing alert whose rule is gone (spec changed, deployment deleted) resolves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ..metrics.history import History
from .rule import Rule

log = logging.getLogger(__name__)

LabelPairs = tuple[tuple[str, str], ...]


class Phase(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertState:
    """Where one rule of one deployment stands, with what a notification about it says."""

    key: str  # Rule.key: "<deployment>/<alertname>"
    phase: Phase
    labels: LabelPairs
    annotations: LabelPairs  # as of the last evaluation that held (a resolved alert keeps its last firing text)
    value: float | None  # the last value that held
    evaluated_at: float
    active_since: float | None = None  # the condition has held since (pending began)
    fired_at: float | None = None  # Alertmanager's startsAt
    resolved_at: float | None = None  # Alertmanager's endsAt

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def annotation_map(self) -> dict[str, str]:
        return dict(self.annotations)

    @property
    def alertname(self) -> str:
        return self.label_map.get("alertname", "")

    @property
    def deployment(self) -> str:
        return self.label_map.get("deployment", "")

    @property
    def severity(self) -> str:
        return self.label_map.get("severity", "")


def _pairs(mapping: Mapping[str, str]) -> LabelPairs:
    return tuple(sorted(mapping.items()))


def step(state: AlertState | None, rule: Rule, value: float | None, now: float) -> tuple[AlertState, AlertState | None]:
    """The rule's next state given its value at ``now``, and the transition to notify (the new
    state, firing or resolved), if any."""
    holds = rule.holds(value)
    if state is not None and state.phase == Phase.FIRING:
        if holds:
            return replace(state, value=value, evaluated_at=now, labels=_pairs(rule.labels()),
                           annotations=_pairs(rule.annotations(value))), None
        resolved = replace(state, phase=Phase.RESOLVED, evaluated_at=now, resolved_at=now)
        return resolved, resolved
    if not holds:
        return AlertState(rule.key, Phase.INACTIVE, _pairs(rule.labels()), (), None, now), None
    since = state.active_since if state is not None and state.phase == Phase.PENDING else None
    since = now if since is None else since
    labels, annotations = _pairs(rule.labels()), _pairs(rule.annotations(value))
    if now - since >= rule.for_s:
        firing = AlertState(rule.key, Phase.FIRING, labels, annotations, value, now, since, fired_at=now)
        return firing, firing
    return AlertState(rule.key, Phase.PENDING, labels, annotations, value, now, since), None


def resolve_orphan(state: AlertState, now: float) -> AlertState | None:
    """A state whose rule is gone: a firing one resolves (notified); any other is forgotten."""
    if state.phase != Phase.FIRING:
        return None
    return replace(state, phase=Phase.RESOLVED, evaluated_at=now, resolved_at=now)


@dataclass(frozen=True)
class Evaluation:
    states: dict[str, AlertState]  # pending, firing and just-resolved alerts by key (inactive ones dropped)
    transitions: list[AlertState]  # the alerts that fired or resolved at this evaluation, in rule order
    errors: dict[str, str] = field(default_factory=dict)  # rule key -> why its value could not be computed

    @property
    def firing(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.phase == Phase.FIRING]


def evaluate_all(history: History, rules: Sequence[Rule], states: Mapping[str, AlertState],
                 now: float) -> Evaluation:
    """Every rule stepped at ``now``. A rule whose value raises counts as no data (and is named
    in ``errors``): one broken rule does not stop the others."""
    new_states: dict[str, AlertState] = {}
    transitions: list[AlertState] = []
    errors: dict[str, str] = {}
    for rule in rules:
        if rule.key in new_states:
            continue  # a duplicate key: the spec validation forbids it; the first one wins
        try:
            value = rule.expr.value(history, rule.deployment, now)
        except Exception as exc:  # noqa: BLE001 - one broken expression must not silence the rest
            errors[rule.key] = f"{type(exc).__name__}: {exc}"
            value = None
        state, transition = step(states.get(rule.key), rule, value, now)
        if state.phase != Phase.INACTIVE:
            new_states[rule.key] = state
        if transition is not None:
            transitions.append(transition)
    for key in sorted(set(states) - {rule.key for rule in rules}):
        orphan = resolve_orphan(states[key], now)
        if orphan is not None:
            new_states[key] = orphan
            transitions.append(orphan)
    return Evaluation(new_states, transitions, errors)
