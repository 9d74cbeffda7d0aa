"""The gateway's driver of the call flow, with a fake upstream pool in place of sockets."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from steadyserve.gateway.proxy import Gateway
from steadyserve.gateway.routes import AdmissionRoute, ReplicaRoute, RoutingTable, ServiceRoute
from steadyserve.wire.http11 import Request
from steadyserve.wire.upstream import UpstreamResponse

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"


class FakePool:
    """Answers 200 once the test opens the gate; remembers what it was sent."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sent: list[bytes] = []
        self.gate = asyncio.Event()

    async def request(self, data: bytes, timeout_s: float, dechunk: bool = False) -> UpstreamResponse:
        self.sent.append(data)
        await self.gate.wait()
        return UpstreamResponse(200, OK, True)

    def close(self) -> None:
        pass


def gateway(max_ongoing: int = 1, queue_timeout_s: float = 30.0, timeout_s: float = 30.0) -> tuple[Gateway, FakePool]:
    pools: list[FakePool] = []

    def factory(endpoint: str) -> FakePool:
        pools.append(FakePool(endpoint))
        return pools[-1]

    gw = Gateway("gt", pool_factory=factory)  # type: ignore[arg-type]
    route = ServiceRoute(timeout_s=timeout_s,
                         admission=AdmissionRoute(max_ongoing_per_replica=max_ongoing, max_queued=8,
                                                  queue_timeout_s=queue_timeout_s),
                         replicas=(ReplicaRoute(id="r0", generation=1, endpoint="unix:/nowhere.sock"),))
    gw.apply_table(RoutingTable(version=1, default_service="svc", services={"svc": route}))
    return gw, pools[0]


def post(path: bytes = b"/work", headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    return Request(b"POST", path, list(headers or []), b"{}", True)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


async def _settle(pool: FakePool, sent: int) -> None:
    while len(pool.sent) < sent:
        await asyncio.sleep(0)


def test_a_queued_call_goes_as_soon_as_the_slot_frees():
    async def scenario() -> None:
        gw, pool = gateway(max_ongoing=1, queue_timeout_s=30.0)
        first = asyncio.create_task(gw.handle(post()))
        await _settle(pool, 1)
        second = asyncio.create_task(gw.handle(post()))
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(pool.sent) == 1 and gw.services["svc"].waiters  # the second one waits in line
        pool.gate.set()
        # Both finish long before the 30 s queue timeout.
        replies = await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert [status_of(r) for r in replies] == [200, 200]

    asyncio.run(scenario())


def test_a_caller_that_goes_away_hands_its_slot_to_the_next_in_line():
    async def scenario() -> None:
        gw, pool = gateway(max_ongoing=1)
        first = asyncio.create_task(gw.handle(post()))
        await _settle(pool, 1)
        second = asyncio.create_task(gw.handle(post()))
        for _ in range(5):
            await asyncio.sleep(0)
        first.cancel()  # the client disconnected
        await _settle(pool, 2)
        assert gw.services["svc"].replicas[0].inflight == 1
        pool.gate.set()
        assert status_of(await asyncio.wait_for(second, 10)) == 200
        assert gw.services["svc"].replicas[0].inflight == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("asked_ms, expected_max_ms", [(None, 30_000), (b"1500", 1500), (b"999999999", 30_000),
                                                       (b"junk", 30_000)])
def test_the_time_left_travels_to_the_replica(asked_ms, expected_max_ms):
    async def scenario() -> None:
        gw, pool = gateway()
        pool.gate.set()
        headers = [] if asked_ms is None else [(b"x-steady-timeout-ms", asked_ms)]
        assert status_of(await gw.handle(post(headers=headers))) == 200
        sent = pool.sent[0]
        lines = [line for line in sent.split(b"\r\n") if line.startswith(b"x-steady-timeout-ms")]
        assert len(lines) == 1  # the caller's own header is replaced, never forwarded twice
        left_ms = int(lines[0].split(b": ")[1])
        assert 0 < left_ms <= expected_max_ms and left_ms > expected_max_ms - 1000

    asyncio.run(scenario())


@pytest.mark.parametrize("request_id", ["caf\u00e9".encode(), b"a" * 200, b"two words", b""])
def test_an_invalid_request_id_is_replaced_even_on_refusals(request_id):
    async def scenario() -> None:
        gw, _ = gateway()
        reply = await gw.handle(post(b"/nowhere/at/all", headers=[(b"x-request-id", request_id)]))
        assert status_of(reply) == 404
        head, _, body = reply.partition(b"\r\n\r\n")
        assert request_id not in head.split(b"x-request-id: ")[1].split(b"\r\n")[0] or not request_id
        assert orjson.loads(body)["request_id"].startswith("gt-")

    asyncio.run(scenario())


def test_a_valid_request_id_is_kept():
    async def scenario() -> None:
        gw, pool = gateway()
        pool.gate.set()
        await gw.handle(post(headers=[(b"x-request-id", b"trace-42.a:b_c")]))
        assert b"x-request-id: trace-42.a:b_c\r\n" in pool.sent[0]

    asyncio.run(scenario())


def test_platform_tokens_never_reach_a_replica_and_caller_identity_cannot_be_spoofed():
    from steadyserve.auth import TokenRecord
    from steadyserve.gateway.proxy import _encode_upstream
    from steadyserve.wire.http11 import Request

    def upstream(headers, auth_required, caller=None):
        request = Request(b"POST", b"/echo", headers, b"{}", True)
        head, _ = _encode_upstream(request, b"/echo", auth_required, caller)
        return head.lower()

    spoof = (b"x-steady-caller", b"name=admin; role=admin")
    platform = (b"authorization", b"Bearer st_abcd1234_secret")
    own = (b"authorization", b"Bearer app-level-token")
    assert b"st_abcd1234" not in upstream([platform, spoof], auth_required=True)
    assert b"st_abcd1234" not in upstream([platform], auth_required=False)
    assert b"authorization" not in upstream([own], auth_required=True)  # with auth on it is the platform's
    assert b"app-level-token" in upstream([own], auth_required=False)  # without, it is the service's own
    assert b"role=admin" not in upstream([spoof], auth_required=False)
    alice = TokenRecord("abcd1234", "alice", "invoker", "d")
    assert b"x-steady-caller: name=alice; role=invoker\r\n" in upstream([platform, spoof], True, alice)
