"""The availability report's arithmetic (pure): incidents, causes, MTTR, MTBF, D = p·E."""

from __future__ import annotations

import math

import pytest

from steadyserve.control.availability import EventRow, Step, build, find_incidents


def _steps(bad: set[int], n: int = 12, step_s: float = 5.0, outage: set[int] = frozenset()) -> list[Step]:
    return [Step(i * step_s, (i + 1) * step_s, 10, 2 if i in bad else 0, 0 if i in outage else 1,
                 watched_s=step_s, ready_s=0.0 if i in outage else step_s) for i in range(n)]


def test_consecutive_bad_steps_are_one_incident_and_a_good_step_ends_it():
    incidents = find_incidents(_steps({2, 3, 7}), [])
    assert [(i.start, i.end, i.failed) for i in incidents] == [(10, 20, 4), (35, 40, 2)]


def test_a_step_without_a_ready_replica_is_an_incident_even_without_failed_calls():
    [incident] = find_incidents(_steps(set(), outage={5}), [])
    assert (incident.start, incident.end, incident.no_capacity_s, incident.failed) == (25, 30, 5, 0)


def test_causes_are_the_events_shortly_before_and_during_the_incident():
    events = [EventRow(-25, "crashed", "r0", "too early"), EventRow(8, "exited", "r1", "exit code -9"),
              EventRow(12, "ready", "r1", "ready; in rotation"), EventRow(50, "exited", "r0", "too late")]
    [incident] = find_incidents(_steps({2}), events)
    assert incident.causes == ("r1 exited: exit code -9",)  # within 30 s before; 'ready' is no cause


def test_figures_follow_from_the_incidents():
    report = build("d", 0, 3600, _steps({10, 11}, n=720), [])
    assert report.calls == 7200 and report.failed == 4
    assert report.availability == pytest.approx(1 - 4 / 7200)
    assert report.mttr_s == 10 and report.mtbf_s == 3590
    assert report.failure_rate_per_h == pytest.approx(1.0)
    assert report.failure_probability_per_h == pytest.approx(1 - math.exp(-1))
    assert report.expected_downtime_s_per_h == pytest.approx((1 - math.exp(-1)) * 10)
    assert report.ready_time_fraction == 1.0


def test_no_calls_and_no_incidents():
    report = build("d", 0, 60, [Step(0, 60, 0, 0, 1, 60, 60)], [])
    assert report.availability is None and report.incidents == () and report.mttr_s is None
    assert report.expected_downtime_s_per_h == 0
