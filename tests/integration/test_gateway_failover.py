"""The gateway's request path against a real replica process and a dead endpoint."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from conftest import FIXTURES, wait_for

from steadyserve.gateway.proxy import Gateway
from steadyserve.gateway.routes import HandlerRoute, ReplicaRoute, RoutingTable, ServiceRoute
from steadyserve.wire.http11 import Request
from steadyserve.wire.upstream import get_json

pytestmark = pytest.mark.integration


@pytest.fixture
def live_replica(tmp_path):
    endpoint = f"unix:{tmp_path / 'r0.sock'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "steadyserve.replica.main", "--target", str(FIXTURES / "slow"),
         "--id", "r0", "--endpoint", endpoint], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: asyncio.run(get_json(endpoint, "/readyz", 5))[0] == 200, 60, "replica ready")
    yield endpoint
    proc.terminate()
    proc.wait(30)


def _gateway(endpoints: dict[str, str]) -> Gateway:
    gateway = Gateway("gt")
    route = ServiceRoute(
        handlers={"charge": HandlerRoute(idempotent=False), "work": HandlerRoute()},
        replicas=tuple(ReplicaRoute(id=i, generation=1, endpoint=e) for i, e in endpoints.items()),
    )
    gateway.apply_table(RoutingTable(version=1, default_service="slow", services={"slow": route}))
    return gateway


def _calls(gateway: Gateway, path: bytes, body: bytes, n: int = 1) -> list[int]:
    """``n`` sequential calls in one event loop (pooled connections belong to it)."""

    async def go() -> list[int]:
        replies = [await gateway.handle(Request(b"POST", path, [], body, True)) for _ in range(n)]
        return [int(r.split(b" ", 2)[1]) for r in replies]

    return asyncio.run(go())


def test_dead_replica_is_failed_over_and_ejected(live_replica, tmp_path):
    gateway = _gateway({"r0": live_replica, "r1": f"unix:{tmp_path / 'gone.sock'}"})
    statuses = _calls(gateway, b"/work", b'{"ms": 0}', 40)
    assert statuses == [200] * 40
    ejected = [e for e in gateway.ejections if e["replica"] == "r1"]
    assert len(ejected) == 1 and "cannot connect" in ejected[0]["last_error"]
    assert gateway.services["slow"].replicas[1].outlier.times_ejected == 1


def test_non_idempotent_call_is_retried_when_it_never_reached_a_replica(live_replica, tmp_path):
    gateway = _gateway({"r1": f"unix:{tmp_path / 'gone.sock'}", "r0": live_replica})
    assert _calls(gateway, b"/charge", b'{"amount": 1}', 20) == [200] * 20


def test_all_replicas_dead_is_502_not_a_hang(tmp_path):
    gateway = _gateway({"r0": f"unix:{tmp_path / 'a.sock'}", "r1": f"unix:{tmp_path / 'b.sock'}"})
    assert _calls(gateway, b"/work", b"{}") == [502]


def test_no_replicas_is_503(tmp_path):
    gateway = _gateway({})
    assert _calls(gateway, b"/work", b"{}") == [503]
