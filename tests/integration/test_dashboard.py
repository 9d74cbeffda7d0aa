"""The dashboard in a real browser (Debian's chromium, driven headless by Playwright), and its login."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import httpx
import pytest
from conftest import FIXTURES, LoadStream, start_instance, stop_instance, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    assert shutil.which(CHROMIUM), "chromium is missing: `make test` installs Debian's chromium package"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    inst = start_instance(FIXTURES / "slow", tmp_path_factory.mktemp("dashboard") / "state", "--replicas", "2",
                          "--gateways", "1")
    inst.api_url = inst.meta()["api_url"]
    yield inst
    stop_instance(inst)


def _login_link(inst) -> str:
    result = inst.cli("dashboard")
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip()
    assert re.fullmatch(re.escape(inst.api_url) + r"/ui\?token=login_[A-Za-z0-9_-]+", link), link
    return link


def _page(browser, errors: list[str]):
    context = browser.new_context()
    page = context.new_page()
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page


def test_the_dashboard_shows_a_running_deployment_live_and_a_killed_replica(served, browser):
    errors: list[str] = []
    context, page = _page(browser, errors)
    # Offline: anything but the control API is refused (and would show as a console error).
    context.route(re.compile("^(?!" + re.escape(served.api_url) + "/)"), lambda route: route.abort())
    with LoadStream(served.port, "/work", {"ms": 2}, threads=2) as load:
        wait_for(lambda: load.ok > 50, 60, "calls flowing")
        page.goto(_login_link(served))
        assert page.url == served.api_url + "/ui"  # the token left the address bar
        # The page's CSP forbids eval, so the test reads the page rather than evaluating script in it.
        wait_for(lambda: "slow" in page.locator("#deployments tbody").inner_text(), 30, "the deployment listed")
        # The charts plot calls from the history (a step every 5 s).
        wait_for(lambda: int(page.locator("body").get_attribute("data-chart-points") or 0) > 0, 60,
                 "calls in the charts")
        assert page.locator("#charts .uplot").count() == 5
        victim = served.process("replica", "r0")
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(lambda: any("r0" in row and "exited" in row
                             for row in page.locator("#events tbody tr").all_inner_texts()), 60,
                 "the killed replica in the events view")
    assert "slow" in page.locator("#replicas").inner_text()
    # Log search by request id finds the call's lines: the replica's error record (the gateway's access
    # line may be sampled away right after the load, which ran past 200 calls a second).
    code, headers, _ = served.post_json("/boom", {}, {"content-type": "application/json",
                                                      "x-request-id": "dash-find-me"})
    assert code == 500
    page.fill("input[name=request_id]", "dash-find-me")

    def found_in_logs() -> bool:
        page.click("#log-search button")  # again: the controller collects log lines once a second
        page.locator("#logs tbody", has_text="dash-find-me").wait_for(timeout=3_000)
        return True

    wait_for(found_in_logs, 90, "the call's lines in the log search")
    context.close()
    assert errors == []


def test_a_login_link_works_once(served, browser):
    link = _login_link(served)
    errors: list[str] = []
    first, page = _page(browser, errors)
    page.goto(link)
    assert page.url.endswith("/ui")
    second, again = _page(browser, errors)
    response = again.goto(link)
    assert response.status == 401 and "not valid" in again.content()
    first.close()
    second.close()


def test_without_a_session_the_page_asks_for_a_token_and_the_api_refuses(served, browser):
    errors: list[str] = []
    context, page = _page(browser, errors)
    page.goto(served.api_url + "/ui")
    assert page.url.endswith("/ui/login")
    page.fill("input[name=token]", "st_nope_nope")
    page.click("button[type=submit]")
    assert "Not a token that may read" in page.content()
    assert httpx.get(served.api_url + "/v1/deployments", timeout=30).status_code == 401
    context.close()


def test_a_session_cookie_reads_but_never_changes_anything(served):
    with httpx.Client(base_url=served.api_url, timeout=30, follow_redirects=False) as client:
        response = client.get("/ui", params={"token": _login_link(served).rpartition("=")[2]})
        assert response.status_code == 303 and response.headers["location"] == "/ui"
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert client.get("/v1/deployments").status_code == 200
        assert client.post("/v1/deployments/slow/scale", json={"replicas": 1}).status_code == 401
        page = client.get("/ui")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_the_html_report_draws_its_charts_offline(served, browser, tmp_path):
    for _ in range(10):
        served.post_json("/work", {"ms": 1})
    page_file = tmp_path / "report.html"
    wait_for(lambda: served.cli("report", "--since", "10m", "--html", str(page_file)).returncode == 0, 60,
             "the report")
    errors: list[str] = []
    context, page = _page(browser, errors)
    context.route(re.compile(r"^https?://"), lambda route: route.abort())  # offline: nothing may be fetched
    page.goto(page_file.as_uri())
    wait_for(lambda: int(page.locator("body").get_attribute("data-charts") or 0) >= 3, 30, "the report's charts")
    context.close()
    assert errors == []


def test_export_grafana_writes_a_dashboard_on_the_same_metrics(tmp_path):
    import json

    from conftest import run_cli

    out = tmp_path / "grafana.json"
    result = run_cli("export", "grafana", "-o", str(out))
    assert result.returncode == 0, result.stderr
    board = json.loads(out.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for metric in ("steady_requests_total", "steady_request_duration_seconds_bucket", "steady_replicas",
                   "steady_admission_total", "steady_replica_resident_memory_bytes"):
        assert any(metric in e for e in exprs)
    # Every query is PromQL that Prometheus accepts: promtool checks them as recording rules.
    rules = tmp_path / "panels.yml"
    rules.write_text("groups:\n  - name: panels\n    rules:\n" + "".join(
        f"      - record: steady:panel_{i}\n        expr: {json.dumps(e.replace('$__rate_interval', '1m').replace('$deployment', '.*'))}\n"
        for i, e in enumerate(exprs)))
    checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_shows_the_autoscaler_and_its_decisions_with_reasons(browser, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  slow:\n    service: {FIXTURES / 'slow'}\n    replicas: {{min: 1, max: 3}}\n"
                    "    autoscaling: {target: 1, decision_s: 1, window_s: 4, panic_window_s: 2}\n"
                    "gateway:\n  processes: 1\n")
    inst = start_instance(spec, tmp_path / "state", command="up")
    inst.api_url = inst.meta()["api_url"]
    errors: list[str] = []
    context, page = _page(browser, errors)
    try:
        with LoadStream(inst.port, "/slow/work", {"ms": 150}, threads=3):
            page.goto(_login_link(inst))
            wait_for(lambda: "1..3" in page.locator("#autoscaling tbody").inner_text(), 30, "the autoscaler's row")
            wait_for(lambda: re.search(r"replicas 1 -> [23]: .*load",
                                       page.locator("#scaling-events tbody").inner_text()) is not None, 60,
                     "a scaling decision with its reason")
            assert "inflight" in page.locator("#autoscaling tbody").inner_text()
    finally:
        context.close()
        stop_instance(inst)
    assert errors == []
