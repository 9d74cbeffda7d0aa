"""The alert state machine: inactive -> pending -> firing -> resolved -> inactive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from steadyserve.alerting.evaluate import AlertState, Phase, evaluate_all, step
from steadyserve.alerting.expressions import Expression
from steadyserve.alerting.rule import Rule
from steadyserve.alerting.units import Unit
from steadyserve.metrics.history import History


@dataclass(frozen=True)
class Fixed(Expression):
    """A value per time, for the state machine alone."""

    values: tuple[tuple[float, float | None], ...]
    unit: ClassVar[Unit] = "ratio"

    def value(self, history: History, deployment: str, now: float) -> float | None:
        return dict(self.values).get(now)

    def promql(self, deployment: str) -> str:
        return "vector(0)"

    def describe(self) -> str:
        return "a test value"


def rule(for_s: float = 60.0, op: str = ">", name: str = "R", values=()) -> Rule:
    return Rule(name=name, deployment="d", expr=Fixed(tuple(values)), threshold=0.5, op=op, for_s=for_s)  # type: ignore[arg-type]


def run(r: Rule, values: list[float | None], step_s: float = 30.0):
    """Step through values at 0, 30, 60 ... s; the phase and transition after each."""
    state: AlertState | None = None
    seen = []
    for i, value in enumerate(values):
        state, transition = step(state, r, value, i * step_s)
        seen.append((state.phase.value, None if transition is None else transition.phase.value))
    return seen


@pytest.mark.parametrize("values, phases", [
    ([0.1, 0.1], [("inactive", None), ("inactive", None)]),
    ([0.9, 0.9, 0.9], [("pending", None), ("pending", None), ("firing", "firing")]),  # held 60 s = for
    ([0.9, 0.1, 0.9], [("pending", None), ("inactive", None), ("pending", None)]),  # pending drops silently
    ([0.9, 0.9, 0.9, 0.9, 0.2], [("pending", None), ("pending", None), ("firing", "firing"), ("firing", None),
                                 ("resolved", "resolved")]),
    ([0.9, 0.9, 0.9, 0.2, 0.2], [("pending", None), ("pending", None), ("firing", "firing"),
                                 ("resolved", "resolved"), ("inactive", None)]),
    ([0.9, 0.9, 0.9, 0.2, 0.9], [("pending", None), ("pending", None), ("firing", "firing"),
                                 ("resolved", "resolved"), ("pending", None)]),  # a new episode waits `for` again
    ([0.9, 0.9, 0.9, None], [("pending", None), ("pending", None), ("firing", "firing"),
                             ("resolved", "resolved")]),  # no data resolves, as in Prometheus
    ([None, None], [("inactive", None), ("inactive", None)]),  # no data never fires
])
def test_transitions(values, phases):
    assert run(rule(), values) == phases


def test_for_zero_fires_on_the_first_evaluation_that_holds():
    assert run(rule(for_s=0), [0.9]) == [("firing", "firing")]


@pytest.mark.parametrize("op, value, holds", [
    (">", 0.5, False), (">=", 0.5, True), ("<", 0.4, True), ("<=", 0.5, True), ("<", 0.6, False), (">", 0.6, True),
])
def test_the_operator_decides_what_holds(op, value, holds):
    assert rule(op=op).holds(value) is holds


def test_a_firing_alert_keeps_its_start_and_updates_its_value():
    r = rule(for_s=0)
    fired, _ = step(None, r, 0.9, 100.0)
    still, transition = step(fired, r, 0.7, 130.0)
    assert transition is None
    assert (still.fired_at, still.active_since, still.value) == (100.0, 100.0, 0.7)
    assert still.annotation_map["value"] == "70%"


def test_a_resolved_alert_keeps_the_text_of_its_last_firing_evaluation():
    r = rule(for_s=0)
    fired, _ = step(None, r, 0.9, 100.0)
    resolved, transition = step(fired, r, 0.1, 130.0)
    assert transition == resolved
    assert (resolved.resolved_at, resolved.fired_at, resolved.value) == (130.0, 100.0, 0.9)
    assert resolved.annotation_map["description"] == "a test value of d is 90% (alert at > 50%)"


def test_an_alert_is_labelled_and_annotated_like_alertmanager_expects():
    fired, _ = step(None, rule(for_s=0), 0.9, 0.0)
    assert fired.label_map == {"alertname": "R", "deployment": "d", "severity": "warning"}
    assert set(fired.annotation_map) == {"summary", "description", "value"}
    assert fired.annotation_map["summary"] == "d: a test value > 50%"


def test_evaluate_all_keeps_only_active_states_and_lists_transitions_in_rule_order():
    rules = [rule(for_s=0, name="A", values=[(0.0, 0.9)]), rule(for_s=60, name="B", values=[(0.0, 0.9)]),
             rule(name="C", values=[(0.0, 0.1)])]
    evaluation = evaluate_all(History(), rules, {}, 0.0)
    assert {k: s.phase for k, s in evaluation.states.items()} == {"d/A": Phase.FIRING, "d/B": Phase.PENDING}
    assert [t.key for t in evaluation.transitions] == ["d/A"]
    assert [s.key for s in evaluation.firing] == ["d/A"]


def test_a_firing_alert_whose_rule_is_gone_resolves_once():
    fired = evaluate_all(History(), [rule(for_s=0, values=[(0.0, 0.9)])], {}, 0.0)
    gone = evaluate_all(History(), [], fired.states, 30.0)
    assert [(t.key, t.phase) for t in gone.transitions] == [("d/R", Phase.RESOLVED)]
    assert evaluate_all(History(), [], gone.states, 60.0).states == {}


def test_a_rule_that_raises_is_no_data_and_named_in_errors():
    @dataclass(frozen=True)
    class Broken(Fixed):
        def value(self, history: History, deployment: str, now: float) -> float | None:
            raise ZeroDivisionError("boom")

    broken = Rule(name="X", deployment="d", expr=Broken(()), threshold=0.0, for_s=0)
    evaluation = evaluate_all(History(), [broken, rule(for_s=0, values=[(0.0, 0.9)])], {}, 0.0)
    assert evaluation.errors == {"d/X": "ZeroDivisionError: boom"}
    assert list(evaluation.states) == ["d/R"]
