"""What the controller records from processes' reports: each item once."""

from __future__ import annotations

import pytest

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


def _window(seq: int, made: dict[str, int], *rows: tuple[str, int, int]) -> dict:
    """A gateway's closed window of refusals; a row: (actor, status, count)."""
    return {"seq": seq, "made": made, "rows": [
        {"actor": a, "source": "10.0.0.1", "status": st, "reason": "why", "target": "/x", "count": n,
         "ts": 5.0, "last_ts": 6.0} for a, st, n in rows]}


def _by_status(rows: list[reports.RefusedCalls]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for r in rows:
        status = r.result.partition(":")[0]
        totals[status] = totals.get(status, 0) + r.count
    return totals


def test_refused_calls_become_aggregated_audit_rows():
    stats = {"instance": "i1", "refusals": [_window(1, {"401": 0, "429": 0}),
                                            _window(2, {"401": 900, "429": 40}, ("-", 401, 900), ("bot", 429, 40))]}
    rows, cursor = reports.refused_calls("g0", stats, None, now_wall=50.0)
    assert [(r.actor, r.result, r.count, r.ts, r.last_ts) for r in rows] == [
        ("-", "401: why", 900, 5.0, 6.0), ("bot", "429: why", 40, 5.0, 6.0)]
    assert cursor == reports.AuditCursor("i1", 2, {"401": 900, "429": 40})
    assert rows[0].row()["action"] == "invoke"


def test_each_window_is_recorded_once_however_often_it_is_reported():
    stats = {"instance": "i1", "refusals": [_window(1, {"401": 3}, ("-", 401, 3))]}
    _, cursor = reports.refused_calls("g0", stats, None, 50.0)
    assert reports.refused_calls("g0", stats, cursor, 51.0) == ([], cursor)
    stats["refusals"].append(_window(2, {"401": 5}, ("-", 401, 2)))
    rows, cursor = reports.refused_calls("g0", stats, cursor, 52.0)
    assert _by_status(rows) == {"401": 2} and cursor.seq == 2


def test_windows_that_fell_off_the_report_are_still_counted_without_detail():
    before = reports.AuditCursor("i1", 1, {"401": 10, "429": 0})
    stats = {"instance": "i1", "refusals": [_window(7, {"401": 70, "429": 5}, ("-", 401, 20))]}
    rows, _ = reports.refused_calls("g0", stats, before, 50.0)
    assert _by_status(rows) == {"401": 60, "429": 5}  # exactly what the slot's counters say it refused
    lost = [r for r in rows if r.actor == "?"]
    assert {r.count for r in lost} == {40, 5} and all("not itemised" in r.result for r in lost)


def test_what_a_killed_gateway_had_not_reported_is_counted_when_its_successor_reports():
    before = reports.AuditCursor("old", 9, {"401": 100, "429": 3})
    successor = {"instance": "new", "refusals": [_window(1, {"401": 130, "429": 3}),
                                                 _window(2, {"401": 131, "429": 3}, ("-", 401, 1))]}
    rows, cursor = reports.refused_calls("g0", successor, before, 50.0)
    assert _by_status(rows) == {"401": 31}
    assert cursor == reports.AuditCursor("new", 2, {"401": 131, "429": 3})


def test_a_new_state_db_starts_from_the_first_window_it_sees():
    stats = {"instance": "i1", "refusals": [_window(4, {"401": 1000}, ("-", 401, 2))]}
    rows, _ = reports.refused_calls("g0", stats, None, 50.0)
    assert _by_status(rows) == {"401": 2}  # the 998 before were another database's to record


def test_counters_that_went_backwards_add_nothing():
    before = reports.AuditCursor("old", 9, {"401": 100})
    stats = {"instance": "new", "refusals": [_window(1, {"401": 0}), _window(2, {"401": 4}, ("-", 401, 4))]}
    rows, _ = reports.refused_calls("g0", stats, before, 50.0)
    assert _by_status(rows) == {"401": 4}


@pytest.mark.parametrize("text", [None, "", "not json", '{"instance": "x"}', "[1]"])
def test_an_unreadable_cursor_is_no_cursor(text):
    assert reports.AuditCursor.from_json(text) is None


def test_a_cursor_survives_its_round_trip():
    cursor = reports.AuditCursor("i1", 3, {"401": 2})
    assert reports.AuditCursor.from_json(cursor.to_json()) == cursor
