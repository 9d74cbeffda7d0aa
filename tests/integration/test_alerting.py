"""Alerts end to end on a real instance: a rule in the spec fires on real failed calls, a real HTTP
receiver gets Alertmanager's webhook JSON (firing, then resolved), `steady alerts` lists it, and the
event stream has both transitions."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import FIXTURES, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration


class Receiver:
    def __init__(self) -> None:
        self.payloads: list[dict] = []
        received = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self, alertname: str) -> list[str]:
        return [a["status"] for p in self.payloads for a in p["alerts"] if a["labels"]["alertname"] == alertname]


def test_a_rule_fires_on_failed_calls_notifies_and_resolves(tmp_path):
    receiver = Receiver()
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"""\
deployments:
  slow:
    service: {FIXTURES / 'slow'}
    replicas: 1
    alerts:
      - name: TooManyErrors
        expr: error_ratio
        threshold: 0.5
        window: 15s
        for: 0s
        severity: critical
gateway:
  processes: 1
notifications:
  webhooks: [{{url: "{receiver.url}", name: tests}}]
""")
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        for _ in range(10):
            assert inst.post_json("/slow/boom", {})[0] == 500
        wait_for(lambda: "firing" in receiver.statuses("TooManyErrors"), 60, "the firing notification")
        firing = next(p for p in receiver.payloads if p["status"] == "firing")
        assert firing["version"] == "4" and firing["receiver"] == "tests"
        [alert] = [a for a in firing["alerts"] if a["labels"]["alertname"] == "TooManyErrors"]
        assert alert["labels"]["deployment"] == "slow" and alert["labels"]["severity"] == "critical"
        listed = json.loads(inst.cli("alerts", "--json").stdout)
        assert any(a["alertname"] == "TooManyErrors" and a["state"] == "firing" for a in listed["active"])
        # Good calls only: the 15 s window forgets the failures and the alert resolves.
        wait_for(lambda: inst.post_json("/slow/work", {"ms": 1})[0] == 200
                 and "resolved" in receiver.statuses("TooManyErrors"), 90, "the resolved notification")
        types = [e["type"] for e in inst.events() if e["kind"] == "alert" and e["subject"] == "TooManyErrors"]
        assert types[:2] == ["firing", "resolved"], types
        table = inst.cli("alerts")
        assert table.returncode == 0 and "TooManyErrors" in table.stdout
    finally:
        stop_instance(inst)
        receiver.server.shutdown()


def test_readers_of_the_state_files_never_break_the_controllers_databases(tmp_path):
    """`steady alerts`, `slo`, `logs` and `report` read the same SQLite files the controller writes.
    Regression: a store that opened and closed its file dropped the controller's locks, and the
    next reader removed the write-ahead log from under it (later writes went nowhere)."""
    import os

    from conftest import EXAMPLES

    inst = start_instance(EXAMPLES / "echo", tmp_path / "state", "--replicas", "1", "--gateways", "1")
    try:
        pid = inst.proc.pid
        for args in (("alerts",), ("slo",), ("logs",), ("report", "--since", "5m"), ("alerts", "--json")):
            assert inst.cli(*args).returncode == 0

        def open_files() -> list[str]:
            return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]

        databases = [path for path in open_files() if ".db" in path]
        assert any(path.endswith("observability.db-wal") for path in databases), databases
        assert not [path for path in databases if path.endswith("(deleted)")], databases
    finally:
        stop_instance(inst)


def test_changing_alert_rules_is_applied_without_a_rollout_and_said_so(tmp_path):
    spec = tmp_path / "steady.yaml"
    body = """\
deployments:
  slow:
    service: {service}
    replicas: 1
    alerts: [{{name: Busy, expr: inflight, threshold: {threshold}}}]
gateway:
  processes: 1
"""
    spec.write_text(body.format(service=FIXTURES / "slow", threshold=10))
    inst = start_instance(spec, tmp_path / "state", command="up")
    try:
        pid = inst.process("replica", "r0")["pid"]
        spec.write_text(body.format(service=FIXTURES / "slow", threshold=20))
        deployed = inst.cli("deploy", "-f", str(spec))
        assert deployed.returncode == 0, deployed.stderr
        assert "updated alerts (no rollout)" in deployed.stdout
        assert [e for e in inst.events("settings") if "alerts changed" in e["message"]]
        assert inst.process("replica", "r0")["pid"] == pid  # nothing restarted
        from conftest import run_cli

        rules = run_cli("export", "prometheus-rules", "--state-dir", str(inst.state_dir))  # what runs
        assert rules.returncode == 0 and "> 20" in rules.stdout and "alert: Busy" in rules.stdout
    finally:
        stop_instance(inst)
