"""Liveness/readiness probes over a process's HTTP endpoint, behind one small wrapper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..errors import UpstreamError
from ..wire.upstream import get_json


@dataclass(frozen=True)
class ProbeResult:
    alive: bool
    ready: bool
    stats: dict[str, Any]
    problem: str | None = None
    replace_reason: str | None = None  # the process asks to be replaced (e.g. a stuck worker)


class Prober(Protocol):
    async def probe(self, endpoint: str, timeout_s: float, credential: str | None = None) -> ProbeResult: ...


async def probe(endpoint: str, timeout_s: float, credential: str | None = None) -> ProbeResult:
    try:
        status, body = await get_json(endpoint, "/healthz", timeout_s, credential)
    except UpstreamError as exc:
        return ProbeResult(False, False, {}, str(exc))
    try:
        stats = orjson.loads(body)
    except orjson.JSONDecodeError:
        stats = {}
    if not isinstance(stats, dict):
        stats = {}
    replace_reason = stats.get("replace_reason")
    replace_reason = str(replace_reason) if replace_reason else None
    if status != 200:
        return ProbeResult(False, False, stats, str(stats.get("problem") or f"/healthz answered {status}"),
                           replace_reason)
    # Alive but asking to be replaced (e.g. after a MemoryError): it serves until its successor is ready.
    ready = bool(stats.get("ready", True)) and not stats.get("draining", False)
    return ProbeResult(True, ready, stats, replace_reason=replace_reason)


class HttpProber:
    """GET /healthz on the process's own endpoint; a unit test passes a fake instead."""

    async def probe(self, endpoint: str, timeout_s: float, credential: str | None = None) -> ProbeResult:
        return await probe(endpoint, timeout_s, credential)
