"""The OpenAI chat format as steadyserve reads it: requests, messages, answers and errors (pure).

A handler marked ``@handler(openai="chat")`` takes ``messages: list[ChatMessage]``
(and any of ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``,
``model``) and yields text pieces. Requests accept every field OpenAI clients
send: the ones a handler does not take are ignored, never refused.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

# OpenAI's `code` is a string (or null): ours, by HTTP status.
CODES = {400: "invalid_request", 401: "invalid_api_key", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         408: "request_timeout", 413: "payload_too_large", 422: "invalid_request", 429: "rate_limit_exceeded",
         500: "server_error", 502: "upstream_error", 503: "unavailable", 504: "timeout"}
# What a chat handler may take from the request, besides messages; the rest is ignored.
HANDLER_FIELDS = ("max_tokens", "temperature", "top_p", "seed", "stop", "model")


class ChatMessage(BaseModel):
    """One message of a conversation: ``role`` and ``content`` (text, or OpenAI's list of parts)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    role: str = "user"
    content: str | list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        """The message's text: its content, or its text parts joined (images and audio left out)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type", "text") == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions`` as clients send it; unknown fields are allowed (clients add many)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False  # "yes" or 1 are refused, as OpenAI does
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(default=1, ge=1, le=1, description="one choice per request")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        return [value] if isinstance(value, str) else value

    def handler_inputs(self, accepted: set[str]) -> dict[str, Any]:
        """The inputs of a chat handler that takes the fields in ``accepted``."""
        values: dict[str, Any] = {"messages": self.messages}
        chosen = {"max_tokens": self.max_completion_tokens or self.max_tokens, "temperature": self.temperature,
                  "top_p": self.top_p, "seed": self.seed, "stop": self.stop, "model": self.model}
        for name in HANDLER_FIELDS:
            if name in accepted and chosen[name] is not None:
                values[name] = chosen[name]
        return values

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def error_body(message: str, *, kind: str = "invalid_request_error", code: str | int | None = None,
               param: str | None = None, **extra: Any) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code, **extra}}


class CompletionIds:
    """The id and creation time every chunk of one completion shares."""

    def __init__(self, request_id: str, model: str) -> None:
        self.id = f"chatcmpl-{request_id}"
        self.created = int(time.time())
        self.model = model

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage}

    def completion(self, text: str, finish_reason: str, usage: dict[str, int]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                             "finish_reason": finish_reason, "logprobs": None}],
                "usage": usage}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def rough_tokens(text: str) -> int:
    """Prompt tokens for the usage figures: about 4 characters a token (OpenAI's rule of thumb).
    Constant time: a replica's event loop must not spend a second counting a huge prompt."""
    return -(-len(text) // 4)
