"""``POST /v1/chat/completions`` in a replica: the ``openai="chat"`` handler in OpenAI's format.

The request is read leniently (every field clients send is accepted; those the
handler does not take are ignored), the handler's inputs strictly. With
``stream: true`` each text piece the handler yields is one
``chat.completion.chunk`` event, then a last chunk with the finish reason, a
usage chunk if asked for, and ``data: [DONE]``; otherwise the pieces are
joined into one ``chat.completion``. Errors have OpenAI's shape.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from ..errors import HandlerFailed
from ..openai_types import CODES, ChatRequest, CompletionIds, error_body, rough_tokens, usage
from ..service import HandlerSpec
from ..wire.http11 import Request, StreamReply, json_response
from .replies import Reply
from .streaming import _END, ItemEncoder, Stepper

if TYPE_CHECKING:
    from .app import ReplicaApp

CHAT_PATH = b"/v1/chat/completions"


class ChatEncoder(ItemEncoder):
    """Text pieces -> ``chat.completion.chunk`` events (the stream's SSE, OpenAI's way)."""

    def __init__(self, spec: HandlerSpec, ids: CompletionIds, chat: ChatRequest, prompt_tokens: int) -> None:
        super().__init__(spec)
        self.ids = ids
        self.limit = chat.token_limit
        self.include_usage = chat.stream_options is not None and chat.stream_options.include_usage
        self.prompt_tokens = prompt_tokens
        self.pieces = 0

    def __call__(self, item: Any) -> bytes:
        text = _piece(self.handler, item)
        delta: dict[str, Any] = {"content": text}
        if self.pieces == 0:
            delta = {"role": "assistant", "content": text}
        self.pieces += 1
        return _event(self.ids.chunk(delta))

    def end(self) -> bytes:
        events = [] if self.pieces else [_event(self.ids.chunk({"role": "assistant", "content": ""}))]
        events.append(_event(self.ids.chunk({}, _finish_reason(self.pieces, self.limit))))
        if self.include_usage:
            events.append(_event(self.ids.usage_chunk(usage(self.prompt_tokens, self.pieces))))
        events.append(b"data: [DONE]\n\n")
        return b"".join(events)

    def error(self, body: dict[str, Any]) -> bytes:
        message = str(body.get("error") or "the answer broke off")
        return _event(error_body(message, kind="server_error", **{k: v for k, v in body.items() if k != "error"}))

    def media_type(self, spec: HandlerSpec) -> bytes:
        return b"text/event-stream"


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _piece(handler: str, item: Any) -> str:
    if not isinstance(item, str):
        raise HandlerFailed(f"chat handler {handler!r} yielded a {type(item).__name__}; it must yield text pieces"
                            " (str)", uuid.uuid4().hex[:12])
    return item


def _finish_reason(pieces: int, limit: int | None) -> str:
    return "length" if limit is not None and pieces >= limit else "stop"


def _openai_error(status: int, body: bytes, extra: bytes) -> bytes:
    """One of our error answers in OpenAI's shape."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = {"error": body.decode("utf-8", "replace")}
    message = str(parsed.pop("error", "error")) if isinstance(parsed, dict) else str(parsed)
    details = parsed if isinstance(parsed, dict) else {}
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return json_response(status, error_body(message, kind=kind, code=CODES.get(status, str(status)), **details),
                         extra_headers=extra)


def _bad_request(exc: ValidationError, where: str, extra: bytes) -> bytes:
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    message = f"{where}: {param + ': ' if param else ''}{first['msg']}"
    if first["type"] == "json_invalid":
        message = f"the request body is not valid JSON: {first['msg']}"
    return json_response(400, error_body(message, param=param, code="invalid_request"), extra_headers=extra)


async def chat_completions(app: ReplicaApp, spec: HandlerSpec, request: Request, request_id: bytes,
                           extra: bytes, deadline: float | None) -> bytes | StreamReply:
    if request.method != b"POST":
        return json_response(405, error_body("/v1/chat/completions answers POST"),
                             extra_headers=extra + b"allow: POST\r\n")
    try:
        chat = ChatRequest.model_validate_json(request.body or b"{}")
    except ValidationError as exc:
        return _bad_request(exc, "invalid chat completion request", extra)
    try:
        kwargs = spec.input_model.model_validate(chat.handler_inputs(set(spec.input_model.model_fields))).__dict__
    except ValidationError as exc:
        return _bad_request(exc, f"handler {spec.name!r} refused the request", extra)
    ids = CompletionIds(request_id.decode("ascii", "replace"), chat.model)
    prompt_tokens = sum(rough_tokens(m.text) for m in chat.messages)
    if chat.stream:
        opened = await app.streaming_call(spec, request, request_id, extra, deadline, kwargs,
                                      ChatEncoder(spec, ids, chat, prompt_tokens))
        if isinstance(opened, StreamReply):
            return opened
        return _reshaped(opened, extra)
    answered = await app.tracked(spec, request_id, extra, _complete(app, spec, request_id, kwargs, deadline, chat,
                                                                     ids, prompt_tokens))
    return _reshaped(answered, extra)


def _reshaped(answer: bytes, extra: bytes) -> bytes:
    """An error answer of ours (not yet in OpenAI's shape) reshaped; anything else as it is."""
    status = int(answer[9:12])
    if status < 400:
        return answer
    body = answer.partition(b"\r\n\r\n")[2]
    if body.startswith(b'{"error":{'):
        return answer
    head = answer.partition(b"\r\n\r\n")[0]
    keep = b"".join(line + b"\r\n" for line in head.split(b"\r\n")[1:]
                    if line.lower().startswith((b"retry-after", b"x-steady-draining", b"x-steady-overloaded", b"allow")))
    return _openai_error(status, body, extra + keep)


async def _complete(app: ReplicaApp, spec: HandlerSpec, request_id: bytes, kwargs: dict[str, Any],
                    deadline: float | None, chat: ChatRequest, ids: CompletionIds, prompt_tokens: int) -> Reply:
    """Run the generator to its end and answer with the whole completion."""
    stepper = Stepper(app, spec, getattr(app.service, spec.name)(**kwargs))
    pieces: list[str] = []
    try:
        while True:
            outcome = await app.bounded(spec, request_id, deadline, stepper.step())
            if isinstance(outcome, Reply):
                return outcome
            if outcome.value is _END:
                break
            try:
                pieces.append(_piece(spec.name, outcome.value))
            except HandlerFailed as exc:
                return Reply(500, orjson.dumps({"error": str(exc), "error_id": exc.error_id}))
    finally:
        await stepper.close()
    completion = ids.completion("".join(pieces), _finish_reason(len(pieces), chat.token_limit),
                                usage(prompt_tokens, len(pieces)))
    return Reply(200, orjson.dumps(completion))

