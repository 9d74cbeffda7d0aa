"""The gateway's per-call flow, driven without sockets: admit, choose, attempt, retry, eject, record."""

from __future__ import annotations

from typing import Any

import pytest

from steadyserve.errors import (
    UpstreamDraining,
    UpstreamLost,
    UpstreamOverloaded,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from steadyserve.gateway.flow import (
    Answered,
    Call,
    Failed,
    Flow,
    Forward,
    Refresh,
    Refreshed,
    Refuse,
    Send,
    Wait,
    Woken,
    call_flow,
)
from steadyserve.gateway.routes import AdmissionRoute, OutlierRoute, ServiceRoute
from steadyserve.gateway.runtime import ServiceRuntime, UpstreamReplica


def runtime(n: int = 2, *, max_ongoing: int = 8, max_queued: int = 4, queue_timeout_s: float = 2.0,
            consecutive_failures: int = 5, adaptive: bool = False, policy: str = "round_robin") -> ServiceRuntime:
    route = ServiceRoute(policy=policy,  # type: ignore[arg-type]
                         admission=AdmissionRoute(max_ongoing_per_replica=max_ongoing, max_queued=max_queued,
                                                  queue_timeout_s=queue_timeout_s, adaptive=adaptive),
                         outlier=OutlierRoute(consecutive_failures=consecutive_failures))
    replicas = [UpstreamReplica(f"r{i}", 1, f"unix:/nowhere/r{i}.sock", revision=1) for i in range(n)]
    return ServiceRuntime("svc", route, replicas)


def call(now: float = 0.0, timeout_s: float = 30.0, idempotent: bool = True) -> Call:
    return Call(key=None, idempotent=idempotent, started_at=now, deadline=now + timeout_s)


class Ejections(list[tuple[str, str]]):
    def __call__(self, service: ServiceRuntime, replica: UpstreamReplica, error: str, period_s: float) -> None:
        self.append((replica.id, error))


def start(service: ServiceRuntime, c: Call | None = None) -> tuple[Flow, Any]:
    flow = call_flow(service, c or call(), Ejections())
    return flow, next(flow)


def finish(flow: Flow, outcome: Any) -> Any:
    try:
        return flow.send(outcome)
    except StopIteration as done:
        return done.value


def test_a_call_is_sent_forwarded_and_its_slot_given_back():
    service = runtime()
    flow, action = start(service)
    assert isinstance(action, Send) and action.timeout_s == 30.0
    assert action.replica.inflight == 1
    result = finish(flow, Answered(200, b"raw", 0.01))
    assert isinstance(result, Forward) and result.response == b"raw"
    assert action.replica.inflight == 0
    assert service.outcomes[1].requests == 1 and service.outcomes[1].failures == 0


@pytest.mark.parametrize("error, idempotent, retried", [
    (UpstreamLost("reset"), True, True),
    (UpstreamLost("reset"), False, False),  # it may have run
    (UpstreamUnreachable("refused"), False, True),  # provably never ran
    (UpstreamDraining("draining"), False, True),
    (UpstreamOverloaded("full"), False, True),
    (UpstreamTimeout("slow"), True, False),  # the call's deadline is spent
])
def test_failover_only_when_safe(error, idempotent, retried):
    service = runtime()
    flow, first = start(service, call(idempotent=idempotent))
    second = finish(flow, Failed(error, 0.01))
    if retried:
        assert isinstance(second, Send) and second.replica is not first.replica
    else:
        assert isinstance(second, Refuse)
        assert second.status == (504 if isinstance(error, UpstreamTimeout) else 502)
    assert first.replica.inflight == 0


def test_consecutive_5xx_answers_eject_the_replica():
    service = runtime(consecutive_failures=3)
    bad = service.replicas[0]
    ejections = Ejections()
    for i in range(3):
        flow = call_flow(service, call(now=i), ejections)
        action = next(flow)
        while action.replica is not bad:  # round robin: answer the good one and try again
            finish(flow, Answered(200, b"", i))
            flow = call_flow(service, call(now=i), ejections)
            action = next(flow)
        assert isinstance(finish(flow, Answered(500, b"", i)), Forward)  # the 500 goes to the caller
    assert ejections == [("r0", "answered 500")]
    assert service.outcomes[1].failures == 3
    for _ in range(4):  # ejected: every call goes to r1
        flow, action = start(service, call(now=3.0))
        assert action.replica.id == "r1"
        finish(flow, Answered(200, b"", 3.0))


def test_never_run_answers_say_nothing_about_health_or_the_revision():
    service = runtime(consecutive_failures=1)
    flow, action = start(service)
    finish(flow, Failed(UpstreamDraining("draining"), 0.01))
    assert not action.replica.outlier.is_ejected(0.01)
    assert 1 not in service.outcomes


def test_when_every_replica_is_busy_the_call_waits_for_a_slot():
    service = runtime(n=1, max_ongoing=1)
    busy, busy_send = start(service)
    waiting, action = start(service)
    assert isinstance(action, Wait) and action.until == pytest.approx(2.0)
    finish(busy, Answered(200, b"", 0.1))  # the slot frees ...
    send = waiting.send(Woken(0.1))  # ... and the waiter takes it
    assert isinstance(send, Send) and send.timeout_s == pytest.approx(29.9)


def test_a_full_queue_sheds_at_once_with_retry_after():
    service = runtime(n=1, max_ongoing=1, max_queued=0)
    busy = start(service)  # noqa: F841 - keeps its slot while alive
    flow = call_flow(service, call(), Ejections())
    with pytest.raises(StopIteration) as done:
        next(flow)
    result = done.value.value
    assert isinstance(result, Refuse) and result.status == 503
    assert result.retry_after_s is not None and result.retry_after_s >= 1
    assert "overloaded" in result.message and result.details["shed"]


def test_a_call_that_could_not_get_a_slot_in_time_is_shed_without_waiting():
    service = runtime(n=1, max_ongoing=1, max_queued=100, queue_timeout_s=0.5)
    service.latency.observe(2.0)  # a slot frees every 2 s: waiting 0.5 s cannot help
    busy = start(service)  # noqa: F841 - keeps its slot while alive
    flow = call_flow(service, call(), Ejections())
    with pytest.raises(StopIteration) as done:
        next(flow)
    refused = done.value.value
    assert refused.status == 503 and "expected wait" in refused.message and refused.retry_after_s == 2


def test_new_calls_queue_behind_waiting_ones():
    service = runtime(n=1, max_ongoing=1)
    busy, _ = start(service)
    first_waiter, wait = start(service)
    assert isinstance(wait, Wait)
    service.waiters.append(object())  # the driver queues the waiter; simulate its place in line
    finish(busy, Answered(200, b"", 0.1))
    # A slot is free, but a call arriving now must not overtake the queued one.
    _, late = start(service)
    assert isinstance(late, Wait)


def test_the_queue_gives_up_at_its_timeout():
    service = runtime(n=1, max_ongoing=1, queue_timeout_s=0.5)
    busy = start(service)  # noqa: F841 - keeps its slot while alive
    flow, wait = start(service)
    assert isinstance(wait, Wait)
    result = finish(flow, Woken(0.6))
    assert isinstance(result, Refuse) and result.status == 503 and result.retry_after_s == 1


def test_the_deadline_covers_retries():
    service = runtime(n=3)
    flow, first = start(service, call(timeout_s=1.0))
    second = finish(flow, Failed(UpstreamLost("reset"), 0.7))
    assert isinstance(second, Send) and second.timeout_s == pytest.approx(0.3)
    result = finish(flow, Failed(UpstreamDraining("draining"), 1.0))
    assert isinstance(result, Refuse) and result.status == 504


def test_a_closed_flow_gives_its_slot_back():
    service = runtime()
    flow, send = start(service)
    flow.close()  # the caller went away mid-call
    assert send.replica.inflight == 0


def test_no_replica_refreshes_the_table_once_then_503():
    empty = runtime(n=0)
    flow, action = start(empty)
    assert isinstance(action, Refresh) and action.service == "svc"
    result = finish(flow, Refreshed(None, 0.0))
    assert isinstance(result, Refuse) and result.status == 503 and result.retry_after_s == 1
    flow, action = start(empty)
    send = flow.send(Refreshed(runtime(n=1), 0.0))
    assert isinstance(send, Send)


def test_adaptive_limits_start_small_and_bound_the_calls_sent():
    service = runtime(n=1, max_ongoing=8, adaptive=True)
    assert service.limit_of(service.replicas[0]) == 2
    first, second = start(service), start(service)  # noqa: F841 - they hold the two slots
    _, third = start(service)
    assert isinstance(third, Wait)


def test_a_replica_that_refuses_as_overloaded_is_left_alone_for_a_growing_while():
    service = runtime(n=2)
    full = service.replicas[0]
    pauses = []
    now = 0.0
    for _ in range(4):
        flow, action = start(service, call(now=now))
        while action.replica is not full:
            finish(flow, Answered(200, b"", now))
            flow, action = start(service, call(now=now))
        retry = finish(flow, Failed(UpstreamOverloaded("full"), now))
        assert isinstance(retry, Send) and retry.replica is not full
        finish(flow, Answered(200, b"", now))
        pauses.append(full.saturated_until - now)
        for _ in range(3):  # meanwhile every call goes to the other replica
            flow, action = start(service, call(now=now))
            assert action.replica is not full
            finish(flow, Answered(200, b"", now))
        now = full.saturated_until
    assert pauses == sorted(pauses) and pauses[0] < pauses[-1]
    assert not full.outlier.is_ejected(now)  # saturation is not a failure


def test_a_queued_call_follows_the_routing_table_that_replaced_its_own():
    old = runtime(n=1, max_ongoing=1)
    busy = start(old)  # noqa: F841 - holds the only slot
    flow, wait = start(old)
    assert isinstance(wait, Wait)
    new = runtime(n=0)  # the table changed: the old replica is gone, another one came
    new.replicas = [UpstreamReplica("r9", 1, "unix:/nowhere/r9.sock", revision=1)]
    send = flow.send(Woken(0.1, current=new))
    assert isinstance(send, Send) and send.replica.id == "r9"


def test_failover_picks_from_the_current_routing_table():
    old = runtime(n=2)
    flow, first = start(old)
    new = runtime(n=0)
    new.replicas = [first.replica, UpstreamReplica("r7", 1, "unix:/nowhere/r7.sock", revision=1)]
    second = finish(flow, Failed(UpstreamLost("reset"), 0.01, current=new))
    assert isinstance(second, Send) and second.replica.id == "r7"


def test_a_call_that_loses_two_replicas_is_not_tried_on_a_third():
    service = runtime(n=4)
    flow, first = start(service)
    second = finish(flow, Failed(UpstreamLost("replica died"), 0.01))
    assert isinstance(second, Send)  # one crash: the call goes elsewhere, as promised
    result = finish(flow, Failed(UpstreamLost("replica died"), 0.02))
    assert isinstance(result, Refuse) and result.status == 502
    assert "second replica" in result.details["reason"]
