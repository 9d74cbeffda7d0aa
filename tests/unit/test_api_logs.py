"""GET /v1/logs and /v1/logs/patterns: the CLI's filters as validated query parameters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from steadyserve.control.api_logs import API_MAX_LIMIT, build_logs_router
from steadyserve.logs.patterns import PatternMiner
from steadyserve.logs.records import LogRecord
from steadyserve.logs.store import LOGS_DB_NAME, LogStore

T0 = 1_700_000_000.0


def rec(message: str, level: str = "info", request_id: str | None = None, ts: float = T0) -> LogRecord:
    return LogRecord(ts, level, "digits", 2, "r0", "digits-r0", request_id, message, "record")


class Client:
    """Calls the app in-process (httpx's ASGI transport), one event loop per call."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://api") as c:
                return await c.get(path, params=params)

        return asyncio.run(call())


@pytest.fixture
def client(tmp_path: Path) -> Client:
    app = FastAPI()
    app.include_router(build_logs_router(tmp_path / LOGS_DB_NAME))
    return Client(app)


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    s = LogStore(tmp_path / LOGS_DB_NAME)
    yield s  # type: ignore[misc]
    s.close()


def test_no_store_yet_is_an_empty_list(client: Client):
    assert client.get("/v1/logs").json() == [] and client.get("/v1/logs/patterns").json() == []


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["started", "slow call", "failed"]),
    ({"level": "warning"}, ["slow call", "failed"]),
    ({"request_id": "g0-a-1"}, ["slow call"]),
    ({"grep": 'call" OR "failed'}, []),
    ({"grep": "slow call"}, ["slow call"]),
    ({"since": str(T0 + 1)}, ["slow call", "failed"]),
    ({"after_id": "2"}, ["failed"]),
    ({"limit": "1"}, ["failed"]),
])
def test_filters(client: Client, store: LogStore, params: dict[str, str], expected: list[str]):
    store.insert_many([rec("started"), rec("slow call", "warning", "g0-a-1", T0 + 1), rec("failed", "error",
                                                                                          ts=T0 + 2)])
    response = client.get("/v1/logs", params=params)
    assert response.status_code == 200
    assert [r["message"] for r in response.json()] == expected


@pytest.mark.parametrize("params", [
    {"level": "loud"}, {"limit": str(API_MAX_LIMIT + 1)}, {"limit": "0"}, {"after_id": "-1"},
    {"grep": "x" * 501}, {"since": "last tuesday"},
])
def test_bad_parameters_are_refused(client: Client, store: LogStore, params: dict[str, str]):
    assert client.get("/v1/logs", params=params).status_code == 422


def test_patterns_lists_templates_with_counts(client: Client, store: LogStore):
    miner = PatternMiner()
    mined, _ = miner.observe([rec(f"queue {n} full", "error") for n in range(4)])
    with store.transaction() as conn:
        store.insert_many(mined)
        miner.save(conn)
    [doc] = client.get("/v1/logs/patterns", params={"deployment": "digits"}).json()
    assert (doc["template"], doc["count"], doc["level"], doc["revisions"]) == ("queue <NUM> full", 4, "error",
                                                                               {"2": 4})
