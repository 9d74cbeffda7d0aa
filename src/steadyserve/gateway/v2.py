"""Open Inference Protocol (KServe V2) routes as the gateway sees them.

Health and readiness are answered by the gateway from its routing table (it
knows which replicas are ready); model metadata and inference go to a replica
of the deployment named by the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import __version__


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Forward:
    service: str


def route_v2(path: str, ready: dict[str, bool]) -> Answer | Forward:
    """``path`` without slashes at the ends; ``ready``: service -> has a ready replica."""
    parts = path.split("/")
    if len(parts) >= 5 and parts[1] == "models" and parts[3] == "versions":
        parts = parts[:3] + parts[5:]
    if parts == ["v2"]:
        return Answer(200, {"name": "steadyserve", "version": __version__, "extensions": ["binary_tensor_data"]})
    if parts == ["v2", "health", "live"]:
        return Answer(200, {"live": True})
    if parts == ["v2", "health", "ready"]:
        all_ready = bool(ready) and all(ready.values())
        return Answer(200 if all_ready else 503, {"ready": all_ready})
    if len(parts) >= 3 and parts[1] == "models":
        model = parts[2]
        if model not in ready:
            return Answer(404, {"error": f"unknown model {model!r}; models: {', '.join(sorted(ready)) or 'none'}"})
        if parts[3:] == ["ready"]:
            return Answer(200 if ready[model] else 503, {"name": model, "ready": ready[model]})
        return Forward(model)
    return Answer(404, {"error": f"no V2 route /{path}"})
