"""steadyserve.Client against a real `steady serve`."""

from __future__ import annotations

import pytest
from conftest import EXAMPLES, FIXTURES

from steadyserve import Client, HandlerFailed, InvalidInput, ServiceUnavailable, UnknownHandler

pytestmark = pytest.mark.integration


def test_call_and_attribute_style(serve):
    inst = serve(EXAMPLES / "echo", "--replicas", "1", "--gateways", "1")
    with Client(inst.url) as client:
        assert client.call("echo", "echo", message="a") == {"message": "a"}
        assert client.echo.echo(message="b") == {"message": "b"}
        with pytest.raises(InvalidInput) as info:
            client.echo.echo(msg="x")
        assert {f["field"] for f in info.value.details["fields"]} == {"message", "msg"}
        with pytest.raises(UnknownHandler, match="no handler 'nope'"):
            client.echo.nope()


def test_handler_failure_carries_the_error_id(serve):
    inst = serve(FIXTURES / "slow", "--replicas", "1", "--gateways", "1")
    with Client(inst.url) as client, pytest.raises(HandlerFailed) as info:
        client.slow.boom()
    assert info.value.error_id and "kaboom" in str(info.value)


def test_unavailable_service_is_retried_then_reported(serve):
    inst = serve(FIXTURES / "crashy", "--replicas", "1", "--gateways", "1", wait_ready=False)
    from conftest import wait_for

    wait_for(lambda: inst.events("crash_loop"), 90, "a crash loop")
    waits: list[float] = []
    with Client(inst.url, max_retries=2, sleep=waits.append) as client, pytest.raises(ServiceUnavailable):
        client.crashy.noop()
    assert len(waits) == 2 and min(waits) >= 1.0  # honoured the gateway's Retry-After: 1


def test_attribute_style_reaches_a_deployment_whose_name_has_hyphens(serve, tmp_path):
    import shutil

    folder = tmp_path / "my_echo"  # served as deployment "my-echo"
    shutil.copytree(EXAMPLES / "echo", folder, ignore=shutil.ignore_patterns("__pycache__"))
    inst = serve(folder, "--replicas", "1", "--gateways", "1")
    with Client(inst.url) as client:
        assert client.my_echo.echo(message="hi") == {"message": "hi"}
        assert client.call("my-echo", "echo", message="hi") == {"message": "hi"}


def test_without_url_or_steady_url_the_client_uses_the_default_gateway_address(monkeypatch):
    monkeypatch.delenv("STEADY_URL", raising=False)
    with Client() as client:
        assert client.url == "http://127.0.0.1:8080"  # `steady serve`'s and `steady up`'s default
    monkeypatch.setenv("STEADY_URL", "http://127.0.0.1:9999/")
    with Client() as client:
        assert client.url == "http://127.0.0.1:9999"
