"""Our alerts through Debian's real Alertmanager: the notifier posts to its /api/v2/alerts, it
routes them to a real webhook receiver here, firing then resolved, with our labels; and what it
sends has the shape (and fingerprint) our own webhook notifications have."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alert_helpers import receiver
from conftest import free_port, wait_for

from steadyserve.alerting.evaluate import AlertState, Phase
from steadyserve.alerting.notify import Notifier, RetryPolicy, Target
from steadyserve.alerting.notifyspec import NotificationSettings
from steadyserve.alerting.webhook import fingerprint, webhook_payload

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [
    pytest.mark.integration,
]
CONFIG = """
route:
  receiver: hook
  group_by: [alertname, deployment]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {url}/hook
        send_resolved: true
"""


@pytest.fixture
def hook() -> Iterator:
    with receiver() as got:
        yield got


@pytest.fixture
def alertmanager(tmp_path: Path, hook) -> Iterator[str]:
    assert ALERTMANAGER is not None
    (tmp_path / "alertmanager.yml").write_text(CONFIG.format(url=hook.url))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is None and httpx.get(f"{url}/-/ready", timeout=1).status_code == 200,
                 30, f"Alertmanager ready (log: {tmp_path / 'alertmanager.log'})")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def alert(phase: Phase, now: float) -> AlertState:
    return AlertState(key="digits/SteadyHighErrorRatio", phase=phase,
                      labels=(("alertname", "SteadyHighErrorRatio"), ("deployment", "digits"),
                              ("severity", "critical"), ("team", "ml")),
                      annotations=(("description", "5xx ratio over 5m of digits is 50% (alert at > 5% for 2m)"),
                                   ("summary", "digits: 5xx ratio over 5m > 5%"), ("value", "50%")),
                      value=0.5, evaluated_at=now, active_since=now - 120, fired_at=now - 10,
                      resolved_at=now if phase == Phase.RESOLVED else None)


def test_alertmanager_routes_our_alert_firing_then_resolved(alertmanager, hook):
    settings = NotificationSettings.model_validate({"alertmanager_url": alertmanager,
                                                    "external_url": "http://127.0.0.1:8081"})
    outcomes: list = []
    notifier = Notifier.from_settings(settings, on_outcome=outcomes.append)
    now = time.time()
    notifier.notify([alert(Phase.FIRING, now)], now)
    wait_for(lambda: hook.delivered, 30, "Alertmanager's firing notification")
    resolved_at = time.time()
    notifier.notify([alert(Phase.RESOLVED, resolved_at)], resolved_at)
    wait_for(lambda: any(b["status"] == "resolved" for b in hook.bodies()), 30,
             "Alertmanager's resolved notification")
    notifier.close()
    assert all(o.delivered for o in outcomes)
    firing = next(b for b in hook.bodies() if b["status"] == "firing")
    resolved = next(b for b in hook.bodies() if b["status"] == "resolved")
    (sent,) = firing["alerts"]
    assert sent["labels"] == {"alertname": "SteadyHighErrorRatio", "deployment": "digits", "severity": "critical",
                              "team": "ml"}
    assert sent["annotations"]["value"] == "50%"
    assert sent["generatorURL"] == "http://127.0.0.1:8081/v1/alerts?deployment=digits"
    assert firing["groupLabels"] == {"alertname": "SteadyHighErrorRatio", "deployment": "digits"}
    assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    # Our fingerprint is Alertmanager's, and our webhook notifications have its shape.
    assert sent["fingerprint"] == fingerprint(sent["labels"])
    ours = webhook_payload([alert(Phase.FIRING, now)], receiver="hook", external_url=alertmanager)
    assert set(ours) == set(firing)
    assert set(ours["alerts"][0]) == set(sent)
    assert ours["groupKey"].endswith(firing["groupKey"].split(":", 1)[1])


def test_a_refresh_moves_the_alerts_end_in_alertmanager(alertmanager, hook):
    """Alertmanager resolves an alert at its endsAt unless told again (as Prometheus does)."""
    notifier = Notifier([Target("alertmanager", f"{alertmanager}/api/v2/alerts")], RetryPolicy(3, 0.1, 1.0),
                        alert_valid_for_s=60.0)

    def active() -> list:
        return httpx.get(f"{alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=2).json()

    now = time.time()
    notifier.notify([alert(Phase.FIRING, now)], now)
    (first,) = wait_for(active, 30, "the alert in Alertmanager")
    notifier.refresh([alert(Phase.FIRING, now + 30)], now + 30)
    (refreshed,) = wait_for(lambda: [a for a in active() if a["endsAt"] > first["endsAt"]], 30, "a later endsAt")
    notifier.close()
    assert refreshed["labels"]["alertname"] == "SteadyHighErrorRatio" and refreshed["status"]["state"] == "active"
    assert refreshed["startsAt"] == first["startsAt"]
