"""The control API's log routes: ``GET /v1/logs`` and ``GET /v1/logs/patterns`` (viewers may read).

    app.include_router(build_logs_router(config.state_dir / LOGS_DB_NAME))

The routes hold no authorisation of their own: they are GETs on the control API app, whose
``guard`` middleware asks every call but /healthz for a token allowed to read. Each call opens
the store read-only in a worker thread (the routes are sync), so a large query does not hold
up the event loop and the controller's writer is never blocked.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from ..logs.records import LEVELS
from ..logs.store import LogStore
from ..logs.template_db import load_templates
from ..logs.timespec import parse_time

API_MAX_LIMIT = 1000
Level = Literal["debug", "info", "warning", "error", "critical"]
_LEVEL_NAMES = {number: name for name, number in LEVELS.items()}


def build_logs_router(db_path: Path) -> APIRouter:
    router = APIRouter(tags=["logs"])

    @router.get("/v1/logs")
    def logs(deployment: str | None = Query(default=None, max_length=64),
             replica: str | None = Query(default=None, max_length=128, description="r0, or a process: digits-r0, g0"),
             level: Annotated[Level | None, Query(description="this level and above")] = None,
             since: str | None = Query(default=None, max_length=64, description="10m, 2h, 1d ago; ISO; epoch s"),
             until: str | None = Query(default=None, max_length=64),
             grep: str | None = Query(default=None, max_length=500, description="these words, in this order"),
             request_id: str | None = Query(default=None, max_length=128),
             after_id: int | None = Query(default=None, ge=0, le=2**62, description="to follow: records after this id"),
             limit: int = Query(default=100, ge=1, le=API_MAX_LIMIT)) -> list[dict[str, Any]]:
        """Log records, oldest first: the newest ``limit`` matching, or the first ``limit`` after ``after_id``."""
        now = time.time()
        window = {"since": _time("since", since, now), "until": _time("until", until, now)}
        store = _open(db_path)
        if store is None:
            return []
        try:
            found = store.query(deployment=deployment, replica=replica, level=level, grep=grep,
                                request_id=request_id, after_id=after_id, limit=limit, **window)
        except sqlite3.OperationalError as exc:  # e.g. created a moment ago, its tables not yet committed
            raise HTTPException(503, f"the log store cannot be read now: {exc}") from None
        finally:
            store.close()
        return [r.to_json() for r in found]

    @router.get("/v1/logs/patterns")
    def patterns(deployment: str | None = Query(default=None, max_length=64),
                 level: Annotated[Level | None, Query(description="templates seen at this level or above")] = None,
                 limit: int = Query(default=100, ge=1, le=API_MAX_LIMIT)) -> list[dict[str, Any]]:
        """Mined log templates, most seen first ("" deployment: the gateways' own lines)."""
        store = _open(db_path)
        if store is None:
            return []
        try:
            templates = load_templates(store.connection, deployment)
        finally:
            store.close()
        floor = LEVELS[level] if level is not None else 0
        return [{"id": t.id, "deployment": t.deployment, "template": t.text, "count": t.count,
                 "level": _LEVEL_NAMES.get(t.level_no, "info"), "first_seen": t.first_seen,
                 "last_seen": t.last_seen, "revisions": {str(k): v for k, v in sorted(t.revisions.items())}}
                for t in templates if t.level_no >= floor][:limit]

    return router


def _time(name: str, text: str | None, now: float) -> float | None:
    if text is None:
        return None
    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: {exc}") from None


def _open(path: Path) -> LogStore | None:
    """None until the controller has collected anything."""
    try:
        return LogStore.open_existing(path)
    except (FileNotFoundError, sqlite3.DatabaseError):
        return None
