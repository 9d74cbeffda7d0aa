"""Refused calls counted per key and window at the gateway: bounded memory, exact counts."""

from __future__ import annotations

import asyncio

import pytest

from steadyserve.gateway.proxy import Gateway
from steadyserve.gateway.refusals import OVERFLOW_ACTOR, RefusalKey, RefusalLog, source_host, status_name
from steadyserve.gateway.routes import RoutingTable, TokenRoute
from steadyserve.wire.http11 import Request


def key(actor: str = "-", source: str = "10.0.0.1", status: int = 401, reason: str = "invalid") -> RefusalKey:
    return RefusalKey(actor, source, status, reason)


def counts(window: dict) -> dict[tuple[str, str, int], int]:
    """Refusals by (actor, source, status), whatever the reasons."""
    totals: dict[tuple[str, str, int], int] = {}
    for r in window["rows"]:
        k = (r["actor"], r["source"], r["status"])
        totals[k] = totals.get(k, 0) + r["count"]
    return totals


def test_refusals_under_one_key_become_one_row_with_a_count_and_a_time_span():
    log = RefusalLog()
    for i in range(1000):
        log.add(key(), "/svc/predict", ts=100.0 + i / 1000, now=5.0)
    window = log.close({"401": 1000})
    assert len(window["rows"]) == 1
    row = window["rows"][0]
    assert (row["count"], row["ts"], row["last_ts"], row["target"]) == (1000, 100.0, pytest.approx(100.999),
                                                                        "/svc/predict")


def test_past_the_key_limit_callers_share_an_overflow_row_per_status_and_nothing_is_lost():
    log = RefusalLog(max_keys=4)
    for i in range(10_000):
        log.add(key(source=f"10.0.{i // 256}.{i % 256}", status=401 if i % 3 else 429), "/x", 1.0, 1.0)
    rows = log.close({})["rows"]
    assert len(rows) <= 4 + 2
    assert sum(r["count"] for r in rows) == 10_000
    assert sum(r["count"] for r in rows if r["status"] == 429) == len(range(0, 10_000, 3))
    assert {r["status"] for r in rows if r["actor"] == OVERFLOW_ACTOR} == {401, 429}


def test_each_closed_window_has_the_next_sequence_number_and_the_counters_when_it_closed():
    log = RefusalLog()
    log.add(key(), "/x", 1.0, 1.0)
    first = log.close({"401": 7})
    second = log.close({"401": 7})  # empty: it still says where the counters stand
    assert (first["seq"], second["seq"]) == (1, 2)
    assert (first["made"], second["rows"]) == ({"401": 7}, [])
    assert [w["seq"] for w in log.report()] == [1, 2]


def test_only_the_last_windows_are_kept():
    log = RefusalLog(max_windows=3)
    for _ in range(10):
        log.add(key(), "/x", 1.0, 1.0)
        log.close({})
    assert [w["seq"] for w in log.report()] == [8, 9, 10]


@pytest.mark.parametrize(("opened", "now", "due"), [(None, 99.0, False), (10.0, 14.9, False), (10.0, 15.0, True)])
def test_a_window_is_due_once_it_has_held_refusals_for_the_window_length(opened, now, due):
    log = RefusalLog()
    if opened is not None:
        log.add(key(), "/x", 1.0, opened)
    assert log.due(now, window_s=5.0) is due


@pytest.mark.parametrize(("peer", "host"), [("203.0.113.5:41234", "203.0.113.5"), ("::1:8080", "::1"),
                                            ("local", "local"), ("", "")])
def test_the_source_is_the_host_without_the_port(peer, host):
    assert source_host(peer) == host


@pytest.mark.parametrize(("status", "name"), [(401, "401"), (403, "403"), (429, "429"), (418, "other")])
def test_statuses_have_a_counter_each(status, name):
    assert status_name(status) == name


def test_the_gateway_counts_every_refusal_429s_included():
    gw = Gateway("gt", clock=lambda: 0.0, wall_clock=lambda: 1000.0)
    gw.apply_table(RoutingTable(version=1, auth_required=True, tokens={
        "ab12": TokenRoute(name="limited", role="invoker", digest=_digest("s3cret"), rate_per_s=1.0, burst=2)}))

    def call(token: str | None) -> int:
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        reply = asyncio.run(gw.handle(Request(b"POST", b"/svc/x", headers, b"{}", True, peer="10.1.2.3:5555")))
        return int(reply.split(b" ", 2)[1])

    statuses = [call(None), call("st_ffff_nope"), *(call("st_ab12_s3cret") for _ in range(5))]
    assert statuses.count(401) == 2 and statuses.count(429) == 3  # 2 of the burst got through (then 404)
    gw.roll_refusals(window_s=0.0)
    window = gw.stats()["refusals"][-1]  # type: ignore[index]
    assert counts(window) == {("-", "10.1.2.3", 401): 2, ("limited", "10.1.2.3", 429): 3}
    assert window["made"] == {"401": 2, "403": 0, "429": 3, "other": 0}


def _digest(secret: str) -> str:
    from steadyserve.auth import digest

    return digest(secret)
