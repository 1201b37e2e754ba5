"""Given a CPU worker on `--backend jax` (or torch), a pipeline trains there and TensorFlow serves the model.

The stack is the API, one `bigmodel worker --pool cpu --backend B` and the infer pool (TensorFlow, the
default) on a private Redis: the same .keras version crosses backends through the store.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from bigmodel.jobs.presence import Presence
from bigmodel.ml import transform as encoding
from tests.integration.test_jobs_http import submit, wait_for
from tests.integration.test_ml_pipeline_http import separable_csv
from tests.services import RedisServer, Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["jax", "torch"])
def backend_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[str, Stack]]:
    backend = request.param
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed here (make install adds jax, and torch where its CPU wheel "
                    "lies on this disk)")
    tmp = tmp_path_factory.mktemp(f"{backend}-stack")
    redis_server = RedisServer(tmp / "redis")
    redis_server.start()
    s = Stack(redis_server, tmp / "store")
    try:
        s.start(cpu_workers=1, pools=("cpu", "infer"), worker_args=("--backend", backend))
        yield backend, s
    finally:
        s.stop()
        redis_server.stop()


def test_a_worker_on_another_backend_runs_a_pipeline_and_tensorflow_serves_its_model(
        backend_stack: tuple[str, Stack]) -> None:
    backend, stack = backend_stack
    url = stack.url
    workers = {w["pool"]: w for w in Presence(stack.redis.client()).workers()}
    # Given a cpu worker on JAX (or torch) and a serving process on TensorFlow
    assert workers["cpu"]["backend"] == backend and workers["infer"]["backend"] == "tensorflow"
    pools = requests.get(f"{url}/readyz", timeout=10).json()["pools"]
    assert pools["cpu"]["backends"] == [backend] and pools["infer"]["backends"] == ["tensorflow"]

    # When a user uploads a CSV and runs a pipeline
    payload, frame = separable_csv()
    dataset = requests.post(f"{url}/v1/datasets", files={"file": ("blobs.csv", payload)}, timeout=30).json()
    job = submit(url, {"type": "pipeline", "params": {
        "dataset": dataset["id"], "preprocess": {"label": "label"},
        "train": {"model": {"name": "blobs", "hidden": [8]}, "epochs": 15, "batch_size": 16}}}).json()
    record = wait_for(url, job["id"], timeout=240)

    # Then it trains and evaluates on that backend (Keras in the worker's prefork child reports it)
    assert record["state"] == "succeeded", record["error"]
    assert record["result"]["evaluate"]["metrics"]["accuracy"] >= 0.9
    events = requests.get(f"{url}/v1/jobs/{job['id']}/events", params={"follow": 0}, timeout=10).json()
    assert any(f"Keras on {backend}" in json.dumps(e) for e in events["items"])
    # And the version says which backend trained it, and whether the TF SavedModel is beside model.keras:
    # Keras exports one from JAX (TensorFlow is installed here), not from torch
    version = requests.get(f"{url}/v1/models/blobs", timeout=10).json()["versions"][0]
    assert version["keras_backend"] == backend
    assert version["saved_model"]["exported"] is (backend == "jax")

    # When the worker predicts (a job) and the TensorFlow serving process answers online
    rows = frame.drop(columns=["label"]).head(8).to_dict(orient="records")
    batch = wait_for(url, submit(url, {"type": "predict", "params": {"model": "blobs", "instances": rows}}
                                 ).json()["id"])
    assert batch["state"] == "succeeded", batch["error"]
    online = requests.post(f"{url}/v1/models/blobs:predict", json={"instances": rows}, timeout=60)
    assert online.status_code == 200, online.text

    # Then both give the same probabilities, and the right labels
    on_worker = [p["probability"] for p in batch["result"]["predictions"]]
    on_tf = np.asarray(online.json()["predictions"]).reshape(-1)
    np.testing.assert_allclose(on_tf, on_worker, rtol=1e-5, atol=1e-6)
    assert [p["label"] for p in batch["result"]["predictions"]] == list(frame["label"].head(8))

    folder = next(Path(stack.store).rglob("models/blobs/1"))
    if backend != "jax":
        assert "reason" in version["saved_model"] and not (folder / "saved_model").exists()
        return
    # And the SavedModel that JAX exported serves the same numbers in TensorFlow, without Keras
    import tensorflow as tf

    transform = json.loads((folder / "meta.json").read_text())["transform"]
    encoded = encoding.encode(encoding.rows_to_frame(rows, transform), transform)
    exported = tf.saved_model.load(str(folder / "saved_model"))
    on_saved_model = np.asarray(exported.serve(encoded)).reshape(-1)
    np.testing.assert_allclose(on_saved_model, on_worker, rtol=1e-5, atol=1e-6)
