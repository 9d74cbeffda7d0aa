"""GET /v1/alerts and GET /v1/slo, on an app of their own."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from alert_helpers import calls, steady_history
from fastapi import FastAPI

from steadyserve.alerting.evaluate import AlertState, Phase
from steadyserve.alerting.slospec import SloSpec
from steadyserve.alerting.store import AlertStore
from steadyserve.control.api_alerts import alerts_router

HISTORY = steady_history(60.0, 60, calls("digits", ok_per_step=99, bad_per_step=1))
SLOS = {"digits": SloSpec.model_validate({"availability": 0.999, "period": "1h"})}


class Client:
    """The app called in-process (httpx's ASGI transport), as test_api_logs does."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://api") as c:
                return await c.get(path, params=params)

        return asyncio.run(call())


@pytest.fixture
def client(tmp_path):
    store = AlertStore(tmp_path / "observability.db")
    firing = AlertState("digits/A", Phase.FIRING, (("alertname", "A"), ("deployment", "digits")),
                        (("summary", "s"), ("value", "1%")), 0.01, 60.0, 0.0, 60.0)
    store.save({firing.key: firing}, [firing], 60.0)
    app = FastAPI()
    app.include_router(alerts_router(store, lambda: HISTORY, lambda: SLOS, clock=lambda: 3600.0))
    yield Client(app)
    store.close()


def test_alerts_lists_active_and_recent(client):
    body = client.get("/v1/alerts").json()
    assert [a["alertname"] for a in body["active"]] == ["A"] and [a["state"] for a in body["recent"]] == ["firing"]
    assert client.get("/v1/alerts", params={"deployment": "echo"}).json() == {"active": [], "recent": []}


def test_slo_reports_budget_and_burn(client):
    (row,) = client.get("/v1/slo").json()
    assert row["deployment"] == "digits" and row["budget_consumed"] == pytest.approx(10.0)
    assert row["burn_rates"][0]["burning"] is False  # 10x: under the fast rule's 14.4x


def test_slo_of_a_deployment_without_one_is_404(client):
    response = client.get("/v1/slo", params={"deployment": "echo"})
    assert response.status_code == 404 and "has no slo" in response.json()["error"]


def test_the_routes_are_in_the_openapi_schema(client):
    assert {"/v1/alerts", "/v1/slo"} <= set(client.get("/openapi.json").json()["paths"])
