"""The OpenAI chat format: requests as OpenAI clients send them, messages, answers, and the gateway's
``/v1`` routing and error reshaping."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from steadyserve.gateway.openai import (
    ChatTarget,
    Refusal,
    chat_target,
    models,
    openai_error_event,
    reshape_error,
)
from steadyserve.gateway.routes import ServiceRoute
from steadyserve.openai_types import (
    CODES,
    HANDLER_FIELDS,
    ChatMessage,
    ChatRequest,
    CompletionIds,
    error_body,
    rough_tokens,
    usage,
)

HELLO = [{"role": "user", "content": "Hello"}]


def chat(**fields) -> ChatRequest:
    return ChatRequest.model_validate({"model": "chat", "messages": HELLO, **fields})


# --- ChatRequest -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "fields",
    [
        {"frequency_penalty": 0.5, "presence_penalty": -0.5},
        {"logit_bias": {"50256": -100}},
        {"user": "user-1234"},
        {"response_format": {"type": "json_object"}},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
         "tool_choice": "auto", "parallel_tool_calls": False},
        {"metadata": {"team": "a"}, "store": False},
        {"logprobs": True, "top_logprobs": 2},
        {"service_tier": "auto", "reasoning_effort": "low", "modalities": ["text"]},
        {"stream": True, "stream_options": {"include_usage": True, "include_obfuscation": False}},
        {"n": 1},
        {"n": 1, "seed": 7, "stop": ["\n"], "temperature": 0, "top_p": 1, "max_tokens": 1,
         "max_completion_tokens": 5},
    ],
)
def test_chat_request_accepts_the_fields_openai_clients_send(fields):
    request = chat(**fields)
    assert request.model == "chat"
    assert [m.text for m in request.messages] == ["Hello"]


@pytest.mark.parametrize(
    "field",
    ["n", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
     "stop", "frequency_penalty", "presence_penalty", "logit_bias", "user", "response_format", "tools"],
)
def test_chat_request_accepts_null_for_a_field_openai_marks_nullable(field):
    # OpenAI's reference types each of these "... or null"; some clients send the null explicitly.
    request = chat(**{field: None})
    assert not request.stream
    assert request.token_limit is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"n": 2}, "n"),
        ({"n": 0}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": None}, "messages"),
        ({"model": None}, "model"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"stop": 3}, "stop"),
    ],
)
def test_chat_request_refuses_what_it_cannot_serve(fields, field):
    with pytest.raises(ValidationError) as invalid:
        chat(**fields)
    assert field in {str(e["loc"][0]) for e in invalid.value.errors()}


def test_chat_request_needs_a_model_and_messages():
    with pytest.raises(ValidationError) as invalid:
        ChatRequest.model_validate({})
    assert {e["loc"][0] for e in invalid.value.errors()} == {"model", "messages"}


@pytest.mark.parametrize(("stop", "expected"), [("\n", ["\n"]), (["a", "b"], ["a", "b"]), (None, None), ([], [])])
def test_chat_request_stop_is_always_a_list(stop, expected):
    assert chat(stop=stop).stop == expected


def test_chat_request_defaults_to_one_unstreamed_choice():
    request = chat()
    assert (request.stream, request.stream_options, request.n, request.token_limit) == (False, None, 1, None)


@pytest.mark.parametrize(
    ("fields", "limit"),
    [({}, None), ({"max_tokens": 10}, 10), ({"max_completion_tokens": 20}, 20),
     ({"max_tokens": 10, "max_completion_tokens": 20}, 20)],
)
def test_chat_request_token_limit_prefers_max_completion_tokens(fields, limit):
    assert chat(**fields).token_limit == limit


def test_handler_inputs_are_the_messages_and_only_the_fields_the_handler_takes():
    request = chat(max_tokens=8, temperature=0.5, top_p=0.9, seed=1, stop="x", user="u", frequency_penalty=1)
    assert request.handler_inputs({"temperature", "seed", "unrelated"}) == {
        "messages": request.messages, "temperature": 0.5, "seed": 1,
    }


def test_handler_inputs_leave_out_fields_the_request_does_not_set():
    assert chat().handler_inputs(set(HANDLER_FIELDS)) == {"messages": chat().messages, "model": "chat"}


def test_handler_inputs_give_every_handler_field_a_handler_takes():
    request = chat(max_tokens=8, temperature=0.0, top_p=0.5, seed=0, stop=["s"])
    assert request.handler_inputs(set(HANDLER_FIELDS)) == {
        "messages": request.messages, "max_tokens": 8, "temperature": 0.0, "top_p": 0.5, "seed": 0,
        "stop": ["s"], "model": "chat",
    }


@pytest.mark.parametrize(("fields", "max_tokens"), [({"max_tokens": 8}, 8), ({"max_completion_tokens": 9}, 9),
                                                    ({"max_tokens": 8, "max_completion_tokens": 9}, 9)])
def test_handler_inputs_max_tokens_is_the_token_limit(fields, max_tokens):
    assert chat(**fields).handler_inputs({"max_tokens"})["max_tokens"] == max_tokens


@pytest.mark.parametrize("accepted", [set(), {"messages"}, {"user", "n"}])
def test_handler_inputs_always_hold_the_messages(accepted):
    request = chat(user="u")
    assert request.handler_inputs(accepted) == {"messages": request.messages}


# --- ChatMessage -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("Hello\nthere", "Hello\nthere"),
        ("", ""),
        (None, ""),
        ([], ""),
        ([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "ab"),
        ([{"type": "text", "text": "look: "},
          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
          {"type": "text", "text": "what is it?"}], "look: what is it?"),
        ([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}], ""),
        ([{"text": "no type is text"}], "no type is text"),
        ([{"type": "text"}], ""),
        ([{"type": "text", "text": "日本語 🎉"}], "日本語 🎉"),
    ],
)
def test_message_text_is_the_content_or_its_text_parts_joined(content, text):
    assert ChatMessage.model_validate({"role": "user", "content": content}).text == text


@pytest.mark.parametrize(
    "message",
    [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "hi", "name": "alice"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "assistant", "content": "ok", "refusal": None, "audio": None},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
    ],
)
def test_message_accepts_every_role_and_the_fields_clients_add(message):
    parsed = ChatMessage.model_validate(message)
    assert parsed.role == message["role"]
    assert parsed.text == (message["content"] or "")


def test_message_role_defaults_to_user():
    assert ChatMessage.model_validate({"content": "hi"}).role == "user"


@pytest.mark.parametrize("content", [3, ["not a part"], {"type": "text"}])
def test_message_refuses_content_that_is_neither_text_nor_parts(content):
    with pytest.raises(ValidationError):
        ChatMessage.model_validate({"role": "user", "content": content})


# --- answers ---------------------------------------------------------------------------------------------

def test_completion_ids_are_shared_by_every_chunk_of_a_completion():
    ids = CompletionIds("req-1", "chat")
    first, last = ids.chunk({"role": "assistant", "content": ""}), ids.chunk({}, "stop")
    assert ids.id == "chatcmpl-req-1"
    assert isinstance(ids.created, int)
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in (first, last)} == {
        ("chatcmpl-req-1", ids.created, "chat", "chat.completion.chunk"),
    }


def test_a_chunk_holds_one_choice_with_its_delta_and_finish_reason():
    assert CompletionIds("r", "m").chunk({"content": "Hi"}, "length")["choices"] == [
        {"index": 0, "delta": {"content": "Hi"}, "finish_reason": "length", "logprobs": None},
    ]


def test_a_usage_chunk_has_no_choices():
    ids = CompletionIds("r", "m")
    figures = usage(3, 4)
    assert ids.usage_chunk(figures) == {"id": "chatcmpl-r", "object": "chat.completion.chunk",
                                        "created": ids.created, "model": "m", "choices": [], "usage": figures}


def test_a_completion_holds_the_whole_text_as_the_assistants_message():
    ids = CompletionIds("r", "m")
    figures = usage(5, 2)
    assert ids.completion("Hello there", "stop", figures) == {
        "id": "chatcmpl-r", "object": "chat.completion", "created": ids.created, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there", "refusal": None},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": figures,
    }


@pytest.mark.parametrize(("prompt", "completion"), [(0, 0), (5, 2), (1000, 1)])
def test_usage_totals_prompt_and_completion_tokens(prompt, completion):
    assert usage(prompt, completion) == {"prompt_tokens": prompt, "completion_tokens": completion,
                                         "total_tokens": prompt + completion}


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("abc", 1), ("abcd", 1), ("abcde", 2), ("x" * 4000, 1000)])
def test_rough_tokens_counts_about_four_characters_a_token(text, tokens):
    assert rough_tokens(text) == tokens


def test_error_body_is_openais_error_shape():
    assert error_body("bad", param="model", code="model_not_found") == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": "model_not_found"},
    }


# --- the gateway's /v1 routes ------------------------------------------------------------------------------

ROUTES = {
    "llama": ServiceRoute(chat_handler="generate"),
    "echo": ServiceRoute(),
    "alpha": ServiceRoute(chat_handler="complete"),
}


def test_models_lists_the_deployments_serving_chat_sorted():
    assert models(ROUTES) == {"object": "list", "data": [
        {"id": "alpha", "object": "model", "created": 0, "owned_by": "steadyserve"},
        {"id": "llama", "object": "model", "created": 0, "owned_by": "steadyserve"},
    ]}


@pytest.mark.parametrize("routes", [{}, {"echo": ServiceRoute()}])
def test_models_is_an_empty_list_without_chat_deployments(routes):
    assert models(routes) == {"object": "list", "data": []}


@pytest.mark.parametrize(
    ("body", "target"),
    [
        (b'{"model": "llama", "messages": []}', ChatTarget("llama", "generate")),
        (b'{"model": "alpha"}', ChatTarget("alpha", "complete")),
    ],
)
def test_chat_target_is_the_deployment_the_model_names(body, target):
    assert chat_target(body, ROUTES) == target


@pytest.mark.parametrize("body", [b"{not json", b'{"model": "llama"', b"\xff\xfe"])
def test_chat_target_refuses_a_body_that_is_not_json(body):
    refusal = chat_target(body, ROUTES)
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.param) == (400, None)
    assert refusal.message.startswith("the request body is not valid JSON")


@pytest.mark.parametrize("body", [b"", b"{}", b"[]", b'"llama"', b'{"model": ""}', b'{"model": 3}',
                                  b'{"model": null}', b'{"model": ["llama"]}'])
def test_chat_target_refuses_a_request_naming_no_model(body):
    refusal = chat_target(body, ROUTES)
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.param) == (400, "model")
    assert "alpha, llama" in refusal.message


@pytest.mark.parametrize(
    ("model", "why"),
    [("gpt-4o", "does not exist"), ("echo", "does not serve chat completions")],
)
def test_chat_target_refuses_a_model_that_serves_no_chat_with_404_listing_the_models(model, why):
    refusal = chat_target(orjson.dumps({"model": model}), ROUTES)
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.param) == (404, "model")
    assert f"the model {model!r} {why}" in refusal.message
    assert refusal.message.endswith("models: alpha, llama")


def test_chat_target_without_chat_deployments_says_how_to_make_one():
    refusal = chat_target(b'{"model": "echo"}', {"echo": ServiceRoute()})
    assert isinstance(refusal, Refusal)
    assert "@handler(openai='chat')" in refusal.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
     (404, "not_found_error"), (413, "invalid_request_error"), (422, "invalid_request_error"),
     (429, "rate_limit_error"), (500, "server_error"), (503, "server_error"), (504, "server_error")],
)
def test_reshape_error_puts_our_error_in_openais_shape(status, kind):
    body = orjson.dumps({"error": "something failed", "request_id": "r-1", "retry_after_s": 2})
    assert orjson.loads(reshape_error(status, body)) == {"error": {
        "message": "something failed", "type": kind, "param": None, "code": CODES[status], "request_id": "r-1",
        "retry_after_s": 2,
    }}
    assert isinstance(CODES[status], str)  # OpenAI's code is a string


def test_reshape_error_keeps_the_param_our_error_names():
    reshaped = orjson.loads(reshape_error(400, b'{"error": "bad model", "param": "model"}'))
    assert reshaped["error"]["param"] == "model"


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps(error_body("already shaped", code="x")),
        b'{"error": {"message": "nested"}}',
        b'{"message": "no error field"}',
        b'{"error": null}',
        b'["a list"]',
        b"plain text, not JSON",
        b"",
        b"<html>502 Bad Gateway</html>",
    ],
)
@pytest.mark.parametrize("status", [400, 404, 502])
def test_reshape_error_leaves_other_bodies_unchanged(status, body):
    assert reshape_error(status, body) == body


def test_a_broken_chat_stream_ends_with_an_event_openai_clients_raise():
    event = openai_error_event({"error": "replica r0 went away mid-stream", "replica": "r0"})
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    error = orjson.loads(event[6:])["error"]
    assert error["message"] == "replica r0 went away mid-stream" and error["type"] == "server_error"
    assert isinstance(error["code"], str) and error["replica"] == "r0"
