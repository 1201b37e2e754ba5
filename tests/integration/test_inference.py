"""Given trained models and a serving process, online inference works over KServe V2 and TF Serving REST.

The stack is the API under gunicorn and one `bigmodel worker --pool infer` on a private Redis; the
models are trained in-process and published in the registry, so expected outputs come from the same
Keras model in this process.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bigmodel.ml import transform as encoding
from tests.services import RedisServer, Stack
from tests.trained import publish

pytestmark = pytest.mark.integration

A = {"Authorization": "Bearer tok-a"}
B = {"Authorization": "Bearer tok-b"}


@dataclass
class Served:
    stack: Stack
    models: dict[tuple[str, int], Any]  # (name, version) -> serving Keras model
    transforms: dict[str, dict]

    def expected(self, name: str, version: int, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.models[(name, version)](np.asarray(x, np.float32), training=False))

    def infer_process(self) -> Any:
        return next(p for p in self.stack.procs if "infer" in p.args and p.poll() is None)


def frames(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    churn = pd.DataFrame({"a": rng.normal(size=n) + 2 * y, "b": rng.normal(size=n),
                          "color": rng.choice(["red", "blue", "green"], n),
                          "label": np.where(y == 1, "yes", "no")})
    plain = pd.DataFrame({f"f{i}": rng.normal(size=n) + (i % 3) * y for i in range(6)} | {"label": y})
    return churn, plain


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("inference")
    redis_server = RedisServer(root / "redis")
    redis_server.start()
    store = root / "store"
    churn, plain = frames()
    models, transforms = {}, {}
    for name, frame, seed in (("churn", churn, 0), ("churn", churn, 7), ("plain", plain, 0)):
        version, model, transform = publish(redis_server.url, str(store), "acme", name, frame, "label",
                                            seed=seed)
        models[(name, version)], transforms[name] = model, transform
    stack = Stack(redis_server, store, env={"BIGMODEL_TOKENS": "acme:tok-a,beta:tok-b"})
    try:
        stack.start(pools=("infer",))
        yield Served(stack, models, transforms)
    finally:
        stack.stop()
        redis_server.stop()


def infer_metrics(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("bigmodel_infer"):
                out[s.name + "".join(f",{k}={v}" for k, v in sorted(s.labels.items()))] = s.value
    return out


def v2_body(x: np.ndarray, **parameters: Any) -> dict:
    body: dict[str, Any] = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(x.shape),
                                        "data": np.asarray(x).reshape(-1).tolist()}]}
    if parameters:
        body["parameters"] = parameters
    return body


def test_tritonclient_unchanged_with_binary_and_json_tensors(served: Served) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=served.stack.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("plain", headers=A) and client.is_model_ready("plain", "1", headers=A)
    assert not client.is_model_ready("nope", headers=A)
    meta = client.get_model_metadata("plain", headers=A)
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 6]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}]
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    for binary in (True, False):
        given = triton.InferInput("features", list(x.shape), "FP32")
        given.set_data_from_numpy(x, binary_data=binary)
        wanted = [triton.InferRequestedOutput("output", binary_data=binary)]
        # Default call (no outputs named): tritonclient asks for binary outputs.
        for outputs in (wanted, None):
            # A copy: tritonclient writes Inference-Header-Content-Length into the dict it is given.
            result = client.infer("plain", [given], outputs=outputs, headers=dict(A))
            np.testing.assert_allclose(result.as_numpy("output"), served.expected("plain", 1, x), atol=1e-5)
            sent = result.get_response()["outputs"][0]
            assert ("data" not in sent) == (binary or outputs is None), sent
            assert ("binary_data_size" in sent.get("parameters", {})) == (binary or outputs is None), sent
    assert result.get_response()["model_version"] == "1"


def test_v2_json_over_plain_http_and_its_errors(served: Served) -> None:
    url = served.stack.url
    x = np.random.default_rng(2).normal(size=(3, 6))
    r = requests.post(f"{url}/v2/models/plain/versions/1/infer", json={**v2_body(x), "id": "r-1"},
                      headers=A, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "r-1" and body["outputs"][0]["shape"] == [3, 1]
    np.testing.assert_allclose(np.reshape(body["outputs"][0]["data"], (3, 1)),
                               served.expected("plain", 1, x), atol=1e-5)
    wrong = requests.post(f"{url}/v2/models/plain/infer", json=v2_body(x[:, :5]), headers=A, timeout=30)
    assert wrong.status_code == 400 and "expected shape [-1, 6]" in wrong.json()["error"]
    missing_model = requests.post(f"{url}/v2/models/nope/infer", json=v2_body(x), headers=A, timeout=30)
    missing_version = requests.get(f"{url}/v2/models/plain/versions/9", headers=A, timeout=30)
    other_tenant = requests.post(f"{url}/v2/models/plain/infer", json=v2_body(x), headers=B, timeout=30)
    for r in (missing_model, missing_version, other_tenant):
        assert r.status_code == 404 and set(r.json()) == {"error"}, r.text
    assert requests.post(f"{url}/v2/models/plain/infer", json=v2_body(x), timeout=30).status_code == 401
    nan = requests.post(f"{url}/v2/models/plain/infer", data=json.dumps(v2_body(np.full((1, 6), np.inf))),
                        headers=A, timeout=30)
    assert nan.status_code == 400
    garbage = requests.post(f"{url}/v2/models/plain/infer", data=b"\x00{", headers=A, timeout=30)
    assert garbage.status_code == 400 and "error" in garbage.json()
    assert requests.get(f"{url}/v2/health/live", timeout=10).status_code == 200


def test_tfserving_predict_with_instances_lists_objects_and_inputs(served: Served) -> None:
    url, transform = served.stack.url, served.transforms["churn"]
    rows = [{"a": 0.3, "b": -1.0, "color": "red"}, {"a": 2.5, "b": 0.4, "color": "green"},
            {"a": -1.0, "b": 1.0, "color": "purple"}]  # an unseen category encodes as all zeros
    encoded = encoding.encode(encoding.rows_to_frame(rows, transform), transform)
    expected = served.expected("churn", 2, encoded)
    as_lists = [[r["a"], r["b"], r["color"]] for r in rows]
    columns = {c: [r[c] for r in rows] for c in ("a", "b", "color")}
    for body, key in (({"instances": rows}, "predictions"), ({"instances": as_lists}, "predictions"),
                      ({"inputs": columns}, "predictions"), ({"inputs": columns}, "outputs"),
                      ({"signature_name": "serving_default", "inputs": as_lists}, "predictions")):
        r = requests.post(f"{url}/v1/models/churn:predict", json=body, headers=A, timeout=30)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.asarray(r.json()[key]), expected, atol=1e-5)
    v1 = requests.post(f"{url}/v1/models/churn/versions/1:predict", json={"instances": rows}, headers=A,
                       timeout=30)
    np.testing.assert_allclose(np.asarray(v1.json()["predictions"]), served.expected("churn", 1, encoded),
                               atol=1e-5)
    short = requests.post(f"{url}/v1/models/churn:predict", json={"instances": [[0.3, -1.0]]}, headers=A,
                          timeout=30)
    assert short.status_code == 400 and "expected shape [-1, 3]" in short.json()["error"]
    missing = requests.post(f"{url}/v1/models/churn/labels/production:predict", json={"instances": rows},
                            headers=A, timeout=30)
    assert missing.status_code == 404 and "production" in missing.json()["error"]


def test_labels_production_follows_an_alias_move_on_the_next_request(served: Served) -> None:
    url, transform = served.stack.url, served.transforms["churn"]
    rows = [{"a": 1.0, "b": 0.5, "color": "blue"}]
    x = encoding.encode(encoding.rows_to_frame(rows, transform), transform)
    for version in (1, 2, 1):
        moved = requests.post(f"{url}/v1/models/churn/aliases/production", json={"version": version},
                              headers=A, timeout=10)
        assert moved.status_code == 200
        for _ in range(8):  # new connections: every API process answers some, none keeps an old answer
            r = requests.post(f"{url}/v1/models/churn/labels/production:predict", json={"instances": rows},
                              headers=A, timeout=30)
            np.testing.assert_allclose(np.asarray(r.json()["predictions"]),
                                       served.expected("churn", version, x), atol=1e-5)
    assert not np.allclose(served.expected("churn", 1, x), served.expected("churn", 2, x), atol=1e-5)
    # Both versions stay warm in the serving process's cache, as its heartbeat says.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pools = requests.get(f"{url}/readyz", timeout=10).json()["pools"]
        if {"acme/churn/1", "acme/churn/2"} <= set(_infer_info(served)["models"]):
            break
        time.sleep(0.5)
    assert pools["infer"]["queues"] == ["infer"]
    assert {"acme/churn/1", "acme/churn/2"} <= set(_infer_info(served)["models"])


def _infer_info(served: Served) -> dict:
    import redis

    client = redis.Redis.from_url(served.stack.redis.url)
    return next(json.loads(v) for v in client.hvals("bm:workers:info") if json.loads(v)["pool"] == "infer")


def test_fifty_concurrent_callers_each_get_their_own_rows_and_batches_form(served: Served) -> None:
    url = served.stack.url
    before = infer_metrics(url)
    rng = np.random.default_rng(3)
    inputs = [rng.normal(size=(1 + i % 3, 6)) for i in range(50)]
    inputs[17] = rng.normal(size=(2, 5))  # malformed: one feature short
    results: dict[int, list[requests.Response]] = {}
    barrier = threading.Barrier(50)

    def caller(i: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            results[i] = [session.post(f"{url}/v2/models/plain/infer", json=v2_body(inputs[i]), headers=A,
                                       timeout=60) for _ in range(4)]

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, responses in results.items():
        for r in responses:
            if i == 17:
                assert r.status_code == 400 and "expected shape [-1, 6]" in r.json()["error"]
                continue
            assert r.status_code == 200, r.text
            out = r.json()["outputs"][0]
            got = np.reshape(out["data"], out["shape"])
            np.testing.assert_allclose(got, served.expected("plain", 1, inputs[i]), atol=1e-5)
    assert len(results) == 50
    after = infer_metrics(url)
    passes = after["bigmodel_infer_batch_size_count"] - before.get("bigmodel_infer_batch_size_count", 0)
    gathered = after["bigmodel_infer_batch_size_sum"] - before.get("bigmodel_infer_batch_size_sum", 0)
    assert gathered == 49 * 4  # every good request went through exactly one forward pass
    assert gathered / passes > 1, f"mean batch size {gathered / passes}"
    assert "bigmodel_infer_batch_size_bucket,le=+Inf" in after


def test_a_malformed_request_in_a_batch_fails_alone_inside_the_serving_process(served: Served) -> None:
    """Bypass the API's checks: rows of the wrong width queued with good ones fail alone, with 400."""
    import redis

    from bigmodel.serving.queue import InferQueue

    queue = InferQueue(redis.Redis.from_url(served.stack.redis.url))
    good = [queue.new_request("acme", "plain", 1, np.ones((2, 6), np.float32) * i, 30) for i in range(3)]
    bad = queue.new_request("acme", "plain", 1, np.ones((1, 4), np.float32), 30)
    nan = queue.new_request("acme", "plain", 1, np.full((1, 6), np.nan, np.float32), 30)
    gone = queue.new_request("acme", "plain", 9, np.ones((1, 6), np.float32), 30)
    batch = [good[0], bad, good[1], nan, gone, good[2]]
    pipe = queue.r.pipeline()
    for request in batch:  # one round trip: the serving process finds them all waiting together
        pipe.lpush("infer", request.to_json())
    pipe.execute()
    replies = [queue.wait(r) for r in batch]
    assert [r.status for r in replies] == [200, 400, 200, 400, 404, 200]
    assert "expected 6 features" in replies[1].error and "NaN" in replies[3].error
    for request, reply in zip(batch, replies, strict=True):
        if reply.status == 200:
            np.testing.assert_allclose(reply.outputs, served.expected("plain", 1, request.x), atol=1e-5)


def test_a_request_past_its_timeout_is_504_and_is_dropped_not_computed(served: Served) -> None:
    url = served.stack.url
    proc = served.infer_process()
    before = infer_metrics(url)
    x = np.zeros((1, 6))
    os.kill(proc.pid, signal.SIGSTOP)  # a serving process that is online but stuck
    try:
        r = requests.post(f"{url}/v2/models/plain/infer", json=v2_body(x, timeout=500_000), headers=A,
                          timeout=30)
        assert r.status_code == 504 and "error" in r.json()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    ok = requests.post(f"{url}/v2/models/plain/infer", json=v2_body(x), headers=A, timeout=30)
    assert ok.status_code == 200
    after = infer_metrics(url)
    expired = "bigmodel_infer_requests_total,outcome=expired"
    assert after.get(expired, 0) - before.get(expired, 0) == 1


def test_no_serving_process_online_is_503_with_retry_after(served: Served) -> None:
    url, stack = served.stack.url, served.stack
    proc = served.infer_process()
    proc.terminate()  # a clean stop leaves presence at once
    proc.wait(30)
    try:
        r = requests.post(f"{url}/v1/models/plain:predict", json={"instances": [[0.0] * 6]}, headers=A,
                          timeout=30)
        assert r.status_code == 503 and r.headers["Retry-After"] and "serving" in r.json()["error"]
        ready = requests.get(f"{url}/v2/health/ready", timeout=10)
        assert ready.status_code == 503 and ready.headers["Retry-After"]
        assert "infer" not in requests.get(f"{url}/readyz", timeout=10).json()["pools"]
    finally:
        stack.spawn("worker", "--pool", "infer", "--loglevel", "WARNING", "--warm", "acme/plain,acme/nope",
                    log="infer.log")
        stack.wait_ready(("infer",))
    # Warmed before it said it was online: the model is loaded before any request asks for it.
    assert _infer_info(served)["models"] == ["acme/plain/1"]
    r = requests.post(f"{url}/v1/models/plain:predict", json={"instances": [[0.0] * 6]}, headers=A,
                      timeout=30)
    assert r.status_code == 200
