"""Client retry policy. The network is httpx's MockTransport (a fake of the
outside world, not of our components); the real gateway is exercised in
tests/integration/test_client.py."""

from __future__ import annotations

import random

import httpx
import pytest

from steadyserve import Client, GatewayError, InvalidInput, ServiceUnavailable
from steadyserve.client import retry_delay_s
from steadyserve.errors import ConnectionFailed


def scripted(*responses: httpx.Response | Exception):
    calls: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handle), calls


def client(transport, sleeps, **kw):
    return Client("http://gw", transport=transport, sleep=sleeps.append, rng=random.Random(0), **kw)


def test_retries_503_honouring_retry_after_then_succeeds():
    transport, calls = scripted(
        httpx.Response(503, json={"error": "no ready replica"}, headers={"retry-after": "2"}),
        httpx.Response(200, json={"message": "hi"}),
    )
    sleeps: list[float] = []
    assert client(transport, sleeps).call("echo", "echo", message="hi") == {"message": "hi"}
    assert len(calls) == 2 and sleeps[0] >= 2.0
    assert calls[0].url.path == "/echo/echo"


def test_gives_up_after_max_retries():
    transport, calls = scripted(*[httpx.Response(502, json={"error": "bad"})] * 4)
    sleeps: list[float] = []
    with pytest.raises(GatewayError):
        client(transport, sleeps, max_retries=3).call("d", "h")
    assert len(calls) == 4 and len(sleeps) == 3


def test_non_idempotent_call_is_not_retried_after_it_may_have_run():
    transport, calls = scripted(httpx.Response(504, json={"error": "timeout"}))
    with pytest.raises(GatewayError):
        client(transport, []).request("d", "pay", {"amount": 1}, idempotent=False)
    assert len(calls) == 1


def test_non_idempotent_call_is_retried_when_it_never_ran():
    transport, calls = scripted(httpx.ConnectError("refused"), httpx.Response(200, json=1))
    assert client(transport, []).request("d", "pay", {}, idempotent=False) == 1
    assert len(calls) == 2


def test_invalid_input_carries_field_errors_and_is_not_retried():
    fields = [{"field": "message", "problem": "Field required", "type": "missing"}]
    transport, calls = scripted(httpx.Response(422, json={"error": "invalid input", "fields": fields}))
    with pytest.raises(InvalidInput) as info:
        client(transport, []).echo.echo()
    assert info.value.details["fields"] == fields and len(calls) == 1


def test_backoff_grows_and_is_capped():
    rng = random.Random(1)
    ceilings = [min(5.0, 0.1 * 2**a) for a in range(10)]
    delays = [retry_delay_s(a, None, 0.1, 5.0, rng) for a in range(10)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert retry_delay_s(0, 3.0, 0.1, 5.0, rng) == 3.0


def test_url_and_token_come_from_the_environment(monkeypatch):
    transport, calls = scripted(httpx.Response(200, json=1))
    monkeypatch.setenv("STEADY_URL", "http://from-env:9")
    monkeypatch.setenv("STEADY_TOKEN", "s3cret")
    Client(transport=transport).call("d", "h")
    assert calls[0].url.host == "from-env" and calls[0].headers["authorization"] == "Bearer s3cret"


def test_without_a_url_a_refused_connection_names_the_default_and_how_to_change_it(monkeypatch):
    monkeypatch.delenv("STEADY_URL", raising=False)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = Client(transport=httpx.MockTransport(refuse), max_retries=0)
    with pytest.raises(ConnectionFailed, match=r"http://127.0.0.1:8080 \(the default gateway address: pass"
                                               r" Client\(url=...\) or set STEADY_URL\)"):
        client.call("d", "h")


def test_service_unavailable_exposes_retry_after():
    transport, _ = scripted(*[httpx.Response(503, json={"error": "x"}, headers={"retry-after": "1"})] * 2)
    with pytest.raises(ServiceUnavailable) as info:
        client(transport, [], max_retries=1).call("d", "h")
    assert info.value.retry_after_s == 1.0


def test_without_an_api_url_management_goes_to_steady_ups_default_and_says_so_when_refused(monkeypatch):
    monkeypatch.delenv("STEADY_API_URL", raising=False)
    seen = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        raise httpx.ConnectError("connection refused", request=request)

    client = Client("http://gw:1", transport=httpx.MockTransport(refuse))
    with pytest.raises(ConnectionFailed, match=r"http://127.0.0.1:8081 \(the default control API address"):
        client.deployments()
    assert seen == ["http://127.0.0.1:8081/v1/deployments"]


def test_call_many_refuses_an_element_that_is_not_a_dict_naming_it():
    transport, calls = scripted(httpx.Response(200, json=[1]))
    client = Client("http://gw:1", transport=transport)
    for bad, kind in (([{"x": 1}, [("x", 5)]], "list"), ([{"x": 1}, 7], "int")):
        with pytest.raises(TypeError, match=f"element 1 is a {kind}, not a dict"):
            client.call_many("d", "h", bad)
    assert calls == []  # nothing was sent
