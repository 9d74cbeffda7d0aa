"""Control API routes that read the metrics history: the availability report and chart series.

Mounted on the control API app (same authentication: viewers may read)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Query

from ..metrics.history import History
from . import report_data
from .statedb import StateDB

MAX_PERIOD_S = 31 * 24 * 3600.0


def observe_router(history: History, db: StateDB) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/report")
    async def report(since: float | None = Query(default=None, description="epoch seconds (default: 24 h ago)"),
                     until: float | None = Query(default=None, description="epoch seconds (default: now)"),
                     deployment: str | None = Query(default=None, max_length=200),
                     steps: bool = True) -> list[dict[str, Any]]:
        """Availability, incidents with causes, MTTR, MTBF and expected downtime per deployment."""
        end = time.time() if until is None else until
        start = end - 86400.0 if since is None else since
        if not 0 < end - start <= MAX_PERIOD_S:
            raise HTTPException(422, f"the period must be positive and at most {MAX_PERIOD_S / 86400:g} days")
        names = [deployment] if deployment else report_data.deployments_seen(history, start, end)
        events = db.events_between(start - 60, end)
        return [report_data.to_json(r, with_steps=steps)
                for r in report_data.reports(history, events, names, start, end)]

    @router.get("/v1/charts")
    async def charts(deployment: str = Query(max_length=200),
                     minutes: float = Query(default=15.0, gt=0, le=24 * 60)) -> dict[str, Any]:
        """Series for the dashboard's charts over the last ``minutes``."""
        now = time.time()
        return {"deployment": deployment, **report_data.chart_series(history, deployment, now - minutes * 60, now)}

    return router
