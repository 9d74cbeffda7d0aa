"""The official `openai` client, unchanged, against examples/chat through the gateway, with access control on."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from conftest import EXAMPLES, run_cli, start_instance, stop_with_children

pytestmark = pytest.mark.integration

QUESTION = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "How do I sort a list?"}]


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    state_dir = root / "state"
    invoker = run_cli("token", "create", "--role", "invoker", "--name", "chat-app", "--state-dir", str(state_dir))
    viewer = run_cli("token", "create", "--role", "viewer", "--name", "dashboards", "--state-dir", str(state_dir))
    assert invoker.returncode == 0 and viewer.returncode == 0, invoker.stderr + viewer.stderr
    spec = root / "steady.yaml"
    spec.write_text(f"deployments:\n  chat:\n    service: {EXAMPLES / 'chat'}\n    replicas: 2\n"
                    f"  echo:\n    service: {EXAMPLES / 'echo'}\n    replicas: 1\n")
    inst = start_instance(spec, state_dir, "--auth", command="up")
    yield inst, invoker.stdout.strip(), viewer.stdout.strip()
    stop_with_children(inst)


def client(inst, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{inst.url}/v1", api_key=token, max_retries=0)


def test_models_lists_the_deployments_that_serve_chat(chat):
    inst, token, _ = chat
    assert [m.id for m in client(inst, token).models.list()] == ["chat"]
    assert client(inst, token).models.retrieve("chat").id == "chat"


def test_a_completion_in_one_piece(chat):
    inst, token, _ = chat
    answer = client(inst, token).chat.completions.create(model="chat", messages=QUESTION, max_tokens=12, seed=7)
    text = answer.choices[0].message.content
    assert answer.object == "chat.completion" and answer.model == "chat"
    assert text and answer.choices[0].message.role == "assistant"
    assert answer.usage.completion_tokens <= 12 and answer.usage.prompt_tokens > 0
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_a_streamed_completion_gives_the_same_text_piece_by_piece(chat):
    inst, token, _ = chat
    api = client(inst, token)
    whole = api.chat.completions.create(model="chat", messages=QUESTION, max_tokens=16, seed=3, temperature=0.5)
    pieces, usage, finish = [], None, None
    for chunk in api.chat.completions.create(model="chat", messages=QUESTION, max_tokens=16, seed=3,
                                             temperature=0.5, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert len([p for p in pieces if p]) > 1  # it came in pieces ...
    assert "".join(pieces) == whole.choices[0].message.content  # ... that make the same answer
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens
    assert finish == whole.choices[0].finish_reason


def test_the_extra_fields_openai_clients_send_are_accepted(chat):
    inst, token, _ = chat
    answer = client(inst, token).chat.completions.create(
        model="chat", messages=QUESTION, max_completion_tokens=5, frequency_penalty=0.5, presence_penalty=0.1,
        logit_bias={"50256": -100}, user="user-42", n=1, top_p=0.9, stop=["\n"], response_format={"type": "text"},
        metadata={"app": "tests"}, store=False, parallel_tool_calls=False, logprobs=False,
        tools=[{"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}],
        extra_body={"some_vendor_field": True})
    assert answer.choices[0].message.content
    assert answer.usage.completion_tokens <= 5


def test_refusals_come_in_openais_error_shape(chat):
    inst, token, viewer = chat
    with pytest.raises(openai.NotFoundError, match="echo.*does not serve chat"):
        client(inst, token).chat.completions.create(model="echo", messages=QUESTION)
    with pytest.raises(openai.NotFoundError, match="'gpt-4o' does not exist; models: chat"):
        client(inst, token).chat.completions.create(model="gpt-4o", messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client(inst, token).chat.completions.create(model="chat", messages=QUESTION, max_tokens=100_000)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client(inst, token).chat.completions.create(model="chat", messages=[])
    with pytest.raises(openai.AuthenticationError):
        client(inst, "not-a-token").chat.completions.create(model="chat", messages=QUESTION)
    with pytest.raises(openai.PermissionDeniedError):
        client(inst, viewer).chat.completions.create(model="chat", messages=QUESTION)
    raw = httpx.post(f"{inst.url}/v1/chat/completions", content=b"{not json",
                     headers={"authorization": f"Bearer {token}"}, timeout=30)
    body = raw.json()
    assert raw.status_code == 400 and body["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in body["error"]["message"]


def test_the_native_route_streams_the_same_handler(chat):
    inst, token, _ = chat
    response = httpx.post(f"{inst.url}/chat/generate", json={"messages": QUESTION, "max_tokens": 5, "seed": 1},
                          headers={"authorization": f"Bearer {token}"}, timeout=30)
    items = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert response.headers["content-type"] == "text/event-stream"
    assert 0 < len(items) <= 5 and all(isinstance(item, str) for item in items)
