"""A batched handler is called per item, and a JSON array of items is that many calls in one request."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import FIXTURES, Instance, wait_for
from prometheus_client.parser import text_string_to_metric_families

from steadyserve import Client, InvalidInput, PayloadTooLarge

pytestmark = pytest.mark.integration

MAX_SIZE = 8  # the fixture's Batch(max_size=8)


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    from conftest import start_instance, stop_instance

    instance = start_instance(FIXTURES / "batched", tmp_path_factory.mktemp("batched") / "state",
                              "--replicas", "1", "--gateways", "1")
    yield instance
    stop_instance(instance)


def _calls(*labels: str) -> list[dict[str, str]]:
    return [{"label": label} for label in labels]


def _seen(inst: Instance) -> list[str]:
    code, _, state = inst.post_json("/state", {})
    assert code == 200
    return list(state["seen"])


def _inflight(inst: Instance) -> float:
    _, _, raw = inst.request("GET", "/metrics")
    return next(s.value for family in text_string_to_metric_families(raw.decode()) for s in family.samples
                if s.name == "steady_handler_inflight_calls")  # inside the replica


def _holding(inst: Instance, pool: ThreadPoolExecutor):
    """A call whose batch runs until ``release``; returns once it is running."""
    held = pool.submit(inst.post_json, "/tag", {"label": "hold"})
    wait_for(lambda: inst.post_json("/state", {})[2]["holding"], 30, "the held batch to run")
    return held


def test_an_array_is_that_many_calls_answered_in_order_in_one_batch(inst):
    labels = [f"order-{i}" for i in range(5)]
    code, _, outputs = inst.post_json("/tag", _calls(*labels))
    assert code == 200
    assert [o["label"] for o in outputs] == labels
    assert all(o["batch"] == labels for o in outputs)  # arrived together, ran together


def test_one_call_sends_one_item_of_each_list_parameter(inst):
    code, _, output = inst.post_json("/tag", {"label": "single"})
    assert (code, output) == (200, {"label": "single", "batch": ["single"]})


def test_array_calls_join_batches_with_other_callers(inst):
    with ThreadPoolExecutor(3) as pool:
        held = _holding(inst, pool)
        single = pool.submit(inst.post_json, "/tag", {"label": "s1"})
        array = pool.submit(inst.post_json, "/tag", _calls("a1", "a2"))
        wait_for(lambda: _inflight(inst) == 3, 30, "both calls to queue behind the held batch")
        inst.post_json("/release", {})
        assert held.result()[0] == 200
        code, _, one = single.result()
        array_code, _, many = array.result()
    assert (code, array_code) == (200, 200)
    assert [o["label"] for o in many] == ["a1", "a2"]
    assert {*one["batch"]} == {*many[0]["batch"]} == {*many[1]["batch"]} == {"s1", "a1", "a2"}


def test_an_invalid_element_is_422_naming_its_index_and_nothing_runs(inst):
    body = [{"label": "valid-but-never-run"}, {"label": 5}, {"nope": 1}, 7]
    code, _, error = inst.post_json("/tag", body)
    assert code == 422
    assert error["indexes"] == [1, 2, 3]
    assert "elements 1, 2, 3 of the array" in error["error"] and "none of its calls ran" in error["error"]
    assert {f["field"] for f in error["fields"]} == {"1.label", "2.label", "2.nope", "3"}
    assert "valid-but-never-run" not in _seen(inst)


def test_an_array_over_max_size_is_413_naming_the_limit(inst):
    code, _, error = inst.post_json("/tag", _calls(*(f"big-{i}" for i in range(MAX_SIZE + 1))))
    assert code == 413
    assert (error["limit_calls"], error["calls"]) == (MAX_SIZE, MAX_SIZE + 1)
    assert f"the limit is {MAX_SIZE}" in error["error"]
    assert not any(label.startswith("big-") for label in _seen(inst))
    code, _, outputs = inst.post_json("/tag", _calls(*(f"full-{i}" for i in range(MAX_SIZE))))
    assert code == 200 and len(outputs) == MAX_SIZE


def test_an_empty_array_is_no_calls(inst):
    code, _, outputs = inst.post_json("/tag", [])
    assert (code, outputs) == (200, [])


def test_an_array_to_a_handler_that_is_not_batched_is_422(inst):
    code, _, error = inst.post_json("/double", [{"x": 1}, {"x": 2}])
    assert code == 422
    assert "accepted only by batched handlers" in error["error"]
    code, _, doubled = inst.post_json("/double", {"x": 4})
    assert (code, doubled) == (200, 8)


def test_calls_of_an_array_whose_caller_gave_up_never_run(inst):
    with ThreadPoolExecutor(1) as pool:
        held = _holding(inst, pool)
        status, _, raw = inst.request("POST", "/tag", json.dumps(_calls("gone-1", "gone-2")).encode(),
                                      {"content-type": "application/json", "x-steady-timeout-ms": "500"})
        assert status == 504, raw
        inst.post_json("/release", {})
        assert held.result()[0] == 200
    # Queued behind anything the gone caller left, so it runs last.
    assert inst.post_json("/tag", {"label": "after"})[0] == 200
    assert not {"gone-1", "gone-2"} & {*_seen(inst)}


def test_openapi_describes_one_call_and_the_array_form(inst):
    code, _, raw = inst.request("GET", "/openapi.json")
    doc = json.loads(raw)
    assert code == 200
    post = doc["paths"]["/tag"]["post"]
    one, many = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    per_call = doc["components"]["schemas"][one["$ref"].rsplit("/", 1)[1]]
    assert per_call["properties"]["label"]["type"] == "string"  # one item of the list parameter
    assert (many["type"], many["items"], many["maxItems"]) == ("array", {"$ref": one["$ref"]}, MAX_SIZE)
    assert "one item of each list parameter" in post["requestBody"]["description"]
    output, outputs = post["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    assert output["properties"]["label"]["type"] == "string" and outputs["type"] == "array"
    assert post["x-steady-batch"]["max_calls_per_request"] == MAX_SIZE
    plain = doc["paths"]["/double"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "oneOf" not in plain


def test_client_call_many_returns_the_outputs_in_order(inst):
    with Client(inst.url) as client:
        outputs = client.call_many("batched", "tag", _calls("sdk-1", "sdk-2", "sdk-3"))
        assert [o["label"] for o in outputs] == ["sdk-1", "sdk-2", "sdk-3"]
        assert client.call_many("batched", "tag", []) == []
        with pytest.raises(InvalidInput) as invalid:
            client.call_many("batched", "tag", [{"label": "ok"}, {"label": 1}])
        assert invalid.value.details["indexes"] == [1]
        with pytest.raises(PayloadTooLarge) as too_many:
            client.call_many("batched", "tag", _calls(*(str(i) for i in range(MAX_SIZE + 1))))
        assert too_many.value.details["limit_calls"] == MAX_SIZE


def test_steady_call_sends_an_array_of_calls_to_a_batched_handler(inst):
    result = inst.cli("call", "tag", "--json", json.dumps(_calls("cli-a", "cli-b")), "--url", inst.url)
    assert result.returncode == 0, result.stderr
    assert [o["label"] for o in json.loads(result.stdout)] == ["cli-a", "cli-b"]
    refused = inst.cli("call", "tag", "--json", "[1, 2]", "--url", inst.url)
    assert refused.returncode == 1 and "a JSON array of them" in refused.stderr
