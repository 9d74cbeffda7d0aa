"""The bundled examples answer correctly through the gateway."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import EXAMPLES, run_cli, wait_for
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration


def test_echo_returns_the_message_unchanged(serve):
    inst = serve(EXAMPLES / "echo", "--replicas", "2")
    code, _, body = inst.post_json("/echo", {"message": "héllo, wörld"})
    assert (code, body) == (200, {"message": "héllo, wörld"})
    result = run_cli("call", "echo", "--json", '{"message": "via cli"}', "--state-dir", str(inst.state_dir))
    assert result.returncode == 0 and json.loads(result.stdout) == {"message": "via cli"}
    bad = run_cli("call", "echo", "--json", '{"msg": 1}', "--state-dir", str(inst.state_dir))
    assert bad.returncode == 1 and "422" in bad.stderr and "message" in bad.stderr


def test_digits_predicts_through_batches(serve):
    from sklearn.datasets import load_digits

    inst = serve(EXAMPLES / "digits", "--replicas", "2")
    data = load_digits()
    images = [[int(v) for v in data.data[i]] for i in range(64)]

    def predict(pixels):
        return inst.post_json("/predict", {"pixels": pixels})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(predict, images))
    assert all(code == 200 for code, _, _ in answers)
    correct = sum(body["digit"] == data.target[i] for i, (_, _, body) in enumerate(answers))
    assert correct >= 55  # the model scores ~97% on held-out digits
    code, _, info = inst.post_json("/info", {})
    assert code == 200 and info["test_accuracy"] > 0.9
    # Concurrent calls were grouped: some replica ran a batch of more than one.
    def batch_sizes() -> dict[str, float]:
        _, _, raw = inst.request("GET", "/metrics")  # every replica's batches (they write them twice a second)
        return {s.name: s.value for family in text_string_to_metric_families(raw.decode()) for s in family.samples
                if s.labels.get("handler") == "predict" and s.name.startswith("steady_batch_size_")}

    samples = wait_for(lambda: (found := batch_sizes()).get("steady_batch_size_sum", 0) >= len(images) and found,
                       30, "all 64 calls' batches in /metrics")
    assert samples["steady_batch_size_sum"] / samples["steady_batch_size_count"] > 1.0


def test_digits_rejects_a_wrong_sized_image(serve):
    inst = serve(EXAMPLES / "digits", "--replicas", "1", "--gateways", "1")
    code, _, body = inst.post_json("/predict", {"pixels": [0] * 10})
    assert code == 422 and body["fields"][0]["field"] == "pixels"


def test_digits_predicts_many_images_in_one_call_as_it_does_one_by_one(serve):
    from sklearn.datasets import load_digits

    from steadyserve import Client

    inst = serve(EXAMPLES / "digits", "--replicas", "1", "--gateways", "1")
    data = load_digits()
    calls = [{"pixels": [int(v) for v in data.data[i]]} for i in range(32)]  # Batch(max_size=32)
    code, _, many = inst.post_json("/predict", calls)
    assert code == 200
    assert many == [inst.post_json("/predict", call)[2] for call in calls]
    with Client(inst.url) as client:
        assert client.call_many("digits", "predict", calls[:3]) == many[:3]
    code, _, error = inst.post_json("/predict", [*calls, calls[0]])
    assert code == 413 and error["limit_calls"] == 32


def test_recommender_recommends_and_scores(serve):
    inst = serve(EXAMPLES / "recommender", "--replicas", "1", "--gateways", "1")
    code, _, recs = inst.post_json("/recommend", {"user_id": 3, "k": 5})
    assert code == 200 and len(recs) == 5
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    code, _, score = inst.post_json("/score", {"user_id": 3, "item_id": recs[0]["item_id"]})
    assert code == 200 and score["score"] == pytest.approx(recs[0]["score"], abs=1e-3)
    code, _, info = inst.post_json("/info", {})
    assert info["embedding_dim"] == 50 and 0 < info["test_mae"] < 1.0
    code, _, body = inst.post_json("/recommend", {"user_id": 10_000})
    assert code == 422 and body["fields"][0]["field"] == "user_id"
    # score is the V2 entry point: one row per (user, item) pair.
    v2 = {"inputs": [{"name": "user_id", "shape": [2], "datatype": "INT64", "data": [3, 3]},
                     {"name": "item_id", "shape": [2], "datatype": "INT64", "data": [recs[0]["item_id"], 1]}]}
    code, _, doc = inst.post_json("/v2/models/recommender/infer", v2)
    scores = next(o for o in doc["outputs"] if o["name"] == "score")
    assert code == 200 and scores["shape"] == [2]
    assert scores["data"][0] == pytest.approx(recs[0]["score"], abs=1e-3)


def test_consistent_hash_sends_a_key_to_one_replica(serve):
    inst = serve(EXAMPLES / "echo", "--replicas", "3", "--lb", "consistent_hash", "--hash-key", "header:x-user")
    seen: dict[str, set[str]] = {}
    for i in range(60):
        user = f"user-{i % 6}"
        _, headers, _ = inst.post_json("/echo", {"message": "x"}, headers={"x-user": user})
        seen.setdefault(user, set()).add(headers["x-steady-replica"])
    assert all(len(replicas) == 1 for replicas in seen.values())
    assert len(set().union(*seen.values())) >= 2  # keys spread over replicas
