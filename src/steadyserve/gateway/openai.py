"""The gateway's OpenAI-compatible routes (pure): ``/v1/models`` and ``/v1/chat/completions``.

``http://HOST:PORT/v1`` is an OpenAI base URL: the model name selects the
deployment (one whose service marks a handler ``@handler(openai="chat")``);
its replicas answer the completion in OpenAI's format. Errors the gateway
gives itself on these routes are reshaped to OpenAI's
``{"error": {"message", "type", "param", "code"}}``, which OpenAI clients read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from ..openai_types import CODES
from .routes import ServiceRoute

PREFIX = b"/v1/"
MODELS_PATH = b"/v1/models"
CHAT_PATH = b"/v1/chat/completions"
_KINDS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error"}



@dataclass(frozen=True, slots=True)
class ChatTarget:
    deployment: str
    handler: str


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str
    param: str | None = None


def model_entry(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "steadyserve"}


def models(routes: Mapping[str, ServiceRoute]) -> dict[str, object]:
    """``GET /v1/models``: the deployments that serve chat completions."""
    return {"object": "list", "data": [model_entry(n) for n, r in sorted(routes.items()) if r.chat_handler]}


def chat_models(routes: Mapping[str, ServiceRoute]) -> list[str]:
    return sorted(n for n, r in routes.items() if r.chat_handler)


def chat_target(body: bytes, routes: Mapping[str, ServiceRoute]) -> ChatTarget | Refusal:
    """Which deployment a completion request is for: its ``model``."""
    try:
        request = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        return Refusal(400, f"the request body is not valid JSON: {exc}")
    model = request.get("model") if isinstance(request, dict) else None
    if not isinstance(model, str) or not model:
        return Refusal(400, "the request names no model: set `model` to a deployment serving chat"
                       f" ({', '.join(chat_models(routes)) or 'none here'})", param="model")
    route = routes.get(model)
    if route is None or route.chat_handler is None:
        available = ", ".join(chat_models(routes)) or "none: mark a generator handler @handler(openai='chat')"
        what = "does not serve chat completions" if route is not None else "does not exist"
        return Refusal(404, f"the model {model!r} {what}; models: {available}", param="model")
    return ChatTarget(model, route.chat_handler)


def openai_error_event(body: dict[str, object]) -> bytes:
    """The SSE event that ends a broken chat stream, as OpenAI clients read it (they raise its message)."""
    error = {"message": body.get("error"), "type": "server_error", "param": None, "code": "stream_interrupted",
             **{k: v for k, v in body.items() if k != "error"}}
    return b"data: " + orjson.dumps({"error": error}) + b"\n\n"


def reshape_error(status: int, body: bytes) -> bytes:
    """One of our ``{"error": "...", ...}`` bodies in OpenAI's error shape (already shaped: unchanged)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), str):
        return body
    message = parsed.pop("error")
    kind = _KINDS.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": parsed.pop("param", None),
                                   "code": CODES.get(status, str(status)), **parsed}})
