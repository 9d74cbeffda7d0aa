"""Liveness/readiness probes over a process's HTTP endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import UpstreamError
from ..wire.upstream import get_json


@dataclass(frozen=True)
class ProbeResult:
    alive: bool
    ready: bool
    stats: dict[str, Any]
    problem: str | None = None


async def probe(endpoint: str, timeout_s: float) -> ProbeResult:
    try:
        status, body = await get_json(endpoint, "/healthz", timeout_s)
    except UpstreamError as exc:
        return ProbeResult(False, False, {}, str(exc))
    try:
        stats = orjson.loads(body)
    except orjson.JSONDecodeError:
        stats = {}
    if status != 200:
        return ProbeResult(False, False, stats, str(stats.get("problem") or f"/healthz answered {status}"))
    ready = bool(stats.get("ready", True)) and not stats.get("draining", False)
    return ProbeResult(True, ready, stats)
