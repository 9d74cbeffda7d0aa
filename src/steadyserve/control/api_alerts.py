"""``GET /v1/alerts`` and ``GET /v1/slo``: what ``steady alerts`` and ``steady slo`` show.

    app.include_router(alerts_router(engine.store, lambda: observer.history, controller_slos))

Read-only routes: the API's guard (a viewer token over TCP) covers them like every other.
The handlers are ``async``: they run on the event loop, as the controller does, so they
read the history between its ticks, never during one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from ..alerting.slospec import SloSpec
from ..alerting.store import AlertStore
from ..alerting.views import alerts_view, slo_view
from ..metrics.history import History


def alerts_router(store: AlertStore | None, history: Callable[[], History],
                  slos: Callable[[], Mapping[str, SloSpec]], clock: Callable[[], float] = time.time) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/alerts")
    async def alerts(deployment: str | None = None,
                     limit: int = Query(default=50, ge=1, le=1000, description="recent alerts at most")) -> Any:
        """Pending and firing alerts, and those that fired recently (newest first)."""
        if store is None:
            return alerts_view([], [])
        return alerts_view(store.active(deployment), store.recent(limit, deployment))

    @router.get("/v1/slo")
    async def slo(deployment: str | None = None) -> Any:
        """Per deployment with an slo: the SLI over the period, the error budget left, burn rates."""
        specs = dict(slos())
        if deployment is not None:
            if deployment not in specs:
                return JSONResponse({"error": f"deployment {deployment!r} has no slo; with one:"
                                              f" {', '.join(sorted(specs)) or 'none'}"}, status_code=404)
            specs = {deployment: specs[deployment]}
        return slo_view(history(), specs, clock())

    return router
