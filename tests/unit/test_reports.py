"""What the controller records from processes' reports: each item once."""

from __future__ import annotations

from steadyserve.control import reports


def test_each_ejection_is_recorded_once():
    stats = {"ejections": [
        {"seq": 1, "service": "svc", "replica": "r0", "generation": 2, "period_s": 5.0, "times": 1,
         "last_error": "answered 500"},
        {"seq": 2, "service": "svc", "replica": "r1", "generation": 1, "period_s": 10.0, "times": 2,
         "last_error": "connection reset"},
    ]}
    notes, seen = reports.ejections("g0", stats, 0)
    assert seen == 2 and [n.subject for n in notes] == ["r0", "r1"]
    assert notes[0].message == "ejected by gateway g0 for 5s (ejection #1 of generation 2): answered 500"
    assert notes[0].deployment == "svc"
    again, seen = reports.ejections("g0", stats, seen)
    assert again == [] and seen == 2


def test_handler_timeouts_become_events_of_the_replica():
    stats = {"handler_timeouts": [{"seq": 3, "handler": "hang", "request_id": "abc",
                                   "message": "handler 'hang' did not return within handler_timeout_s (1s)"}]}
    notes, seen = reports.handler_timeouts("r1", "svc", stats, 2)
    assert seen == 3 and notes[0].type == "handler_timeout" and notes[0].subject == "r1"
    assert "(request abc): answered 504" in notes[0].message


def test_refused_calls_become_audit_rows():
    stats = {"auth_failures": [{"seq": 1, "ts": 5.0, "status": 401, "actor": "-", "reason": "missing token",
                                "target": "/x", "source": "127.0.0.1:5"}]}
    rows, seen = reports.refused_calls(stats, 0)
    assert seen == 1 and rows[0].result == "401: missing token" and rows[0].source == "127.0.0.1:5"
    assert reports.refused_calls({}, seen) == ([], 1)
