"""Each source of a gateway's routing table: file, controller (a real HTTP server), DNS (a fake resolver)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from steadyserve.gateway.discovery import (
    ControllerSource,
    DnsSource,
    Lookup,
    credential_env,
    dns_table,
    resolve_host,
)
from steadyserve.gateway.routes import (
    HandlerRoute,
    ReplicaRoute,
    RoutingTable,
    ServiceRoute,
    TableFile,
    write_table,
)

TEMPLATE = RoutingTable(version=7, auth_required=True, services={
    "echo": ServiceRoute(handlers={"echo": HandlerRoute(idempotent=True)}),
    "chat-bot": ServiceRoute(timeout_s=5.0),
})


def until(get: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = get()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_dns_table_puts_each_deployments_addresses_in_as_replicas_with_its_credential():
    table = dns_table(TEMPLATE, {"echo": ["10.0.0.2", "10.0.0.1"], "chat-bot": ["fd00::5"]}, 8000,
                      {"echo": "k" * 40, "chat-bot": None}, version=3)
    assert table.version == 3 and table.auth_required and table.services["chat-bot"].timeout_s == 5.0
    assert table.services["echo"].replicas == (
        ReplicaRoute(id="10-0-0-1", generation=0, endpoint="tcp:10.0.0.1:8000", credential="k" * 40),
        ReplicaRoute(id="10-0-0-2", generation=0, endpoint="tcp:10.0.0.2:8000", credential="k" * 40))
    assert table.services["chat-bot"].replicas == (
        ReplicaRoute(id="fd00--5", generation=0, endpoint="tcp:[fd00::5]:8000", credential=None),)
    assert dns_table(TEMPLATE, {}, 8000, {}, 1).services["echo"].replicas == ()


def test_the_credential_of_a_deployment_is_read_from_its_own_variable():
    assert credential_env("chat-bot") == "STEADY_REPLICA_KEY_CHAT_BOT"


class FakeDns:
    def __init__(self) -> None:
        self.answers: dict[str, list[str] | Exception] = {}
        self.asked: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        answer = self.answers.get(host, [])
        if isinstance(answer, Exception):
            raise answer
        return list(answer)


@pytest.fixture
def template_file(tmp_path: Path) -> TableFile:
    write_table(tmp_path / "routes.json", TEMPLATE)
    return TableFile(tmp_path / "routes.json")


def test_the_dns_source_follows_ready_pods_and_keeps_them_through_a_passing_failure(template_file):
    dns = FakeDns()
    dns.answers = {"echo-replicas": ["10.0.0.1", "10.0.0.2"], "chat-bot-replicas": []}
    source = DnsSource(template_file, 8000, lambda name: f"{name}-replicas", lambda name: f"key-of-{name}" * 4,
                       resolve=dns, interval_s=0.01)
    first = source.fetch()
    assert first is not None and [r.endpoint for r in first.services["echo"].replicas] == [
        "tcp:10.0.0.1:8000", "tcp:10.0.0.2:8000"]
    assert first.services["echo"].replicas[0].credential == "key-of-echo" * 4
    assert source.fetch() == first  # nothing changed: the same table, the same version
    dns.answers["echo-replicas"] = Lookup("echo-replicas: Temporary failure in name resolution")
    assert source.fetch() == first  # a passing failure: the known replicas stay
    dns.answers["echo-replicas"] = ["10.0.0.2"]  # a pod left (Kubernetes lists ready pods only)
    third = source.fetch()
    assert third is not None and third.version == first.version + 1
    assert [r.endpoint for r in third.services["echo"].replicas] == ["tcp:10.0.0.2:8000"]
    dns.answers["echo-replicas"] = []  # the name is gone: no replica, not the last known ones
    assert source.fetch().services["echo"].replicas == ()  # type: ignore[union-attr]


def test_the_dns_source_hands_each_new_table_over_once_from_its_thread(template_file):
    dns = FakeDns()
    dns.answers = {"echo-replicas": ["10.0.0.1"]}
    source = DnsSource(template_file, 8000, lambda name: f"{name}-replicas", lambda name: None,
                       resolve=dns, interval_s=0.01)
    source.start()
    try:
        table = until(source.poll)
        assert [r.id for r in table.services["echo"].replicas] == ["10-0-0-1"]
        assert source.poll() is None
        dns.answers["echo-replicas"] = ["10.0.0.1", "10.0.0.3"]
        table = until(source.poll)
        assert [r.id for r in table.services["echo"].replicas] == ["10-0-0-1", "10-0-0-3"]
    finally:
        source.close()


def test_resolve_host_reads_the_system_resolver_and_a_missing_name_has_no_address():
    assert "127.0.0.1" in resolve_host("localhost")
    assert resolve_host("no-such-host.invalid") == []


class _TableServer(http.server.BaseHTTPRequestHandler):
    table = b""
    seen: list[str | None] = []
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append(self.headers.get("authorization"))
        body = self.table if self.path == "/v1/routes" else b"{}"
        self.send_response(self.status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def controller_api() -> Iterator[tuple[str, type[_TableServer]]]:
    handler = type("Handler", (_TableServer,), {"seen": [], "table": TEMPLATE.model_dump_json().encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def test_the_controller_source_reads_the_table_with_its_token(controller_api):
    url, handler = controller_api
    source = ControllerSource(url, "stdy_admin", interval_s=0.01)
    source.start()
    try:
        assert until(source.poll) == TEMPLATE
        assert handler.seen[0] == "Bearer stdy_admin"
        assert source.poll() is None  # unchanged
        handler.table = TEMPLATE.model_copy(update={"version": 8}).model_dump_json().encode()
        assert until(source.poll).version == 8
        handler.status = 403  # a revoked token: the last table stays in use
        asked = len(handler.seen)
        until(lambda: len(handler.seen) >= asked + 2)  # refused twice since
        assert source.poll() is None
    finally:
        source.close()


def test_the_controller_source_keeps_serving_when_the_controller_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = ControllerSource(f"http://127.0.0.1:{port}", None, interval_s=0.01)
    assert source.poll() is None
    with pytest.raises(Exception):  # noqa: B017 - what httpx raises for a refused connection
        source.fetch()
    source.close()


def test_the_file_source_hands_over_each_written_table_once_and_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "routes.json"
    source = TableFile(path)
    assert source.poll() is None  # no table yet
    write_table(path, TEMPLATE)
    assert source.poll() == TEMPLATE and source.poll() is None
    write_table(path, TEMPLATE.model_copy(update={"version": 8}))
    assert source.poll().version == 8  # type: ignore[union-attr]
    path.write_text("{not json")
    assert source.poll() is None  # unusable: the gateway keeps serving with version 8


def test_the_controller_source_refuses_a_table_larger_than_a_table_can_be(controller_api, monkeypatch):
    from steadyserve.gateway import discovery

    url, handler = controller_api
    monkeypatch.setattr(discovery, "MAX_TABLE_BYTES", 1024)
    handler.table = b'{"version": 1, "services": {}, "padding": "' + b"x" * 4096 + b'"}'
    source = ControllerSource(url, None)
    with pytest.raises(RuntimeError, match="more than"):
        source.fetch()
    source.close()
