"""Given a CPU worker on `--backend jax`, a pipeline trains there and TensorFlow serves the model.

The stack is the API, one `bigmodel worker --pool cpu --backend jax` and the infer pool (TensorFlow, the
default) on a private Redis: the same .keras version crosses backends through the store. (torch is
`--backend torch` through the same code; tests/unit/test_backends.py trains on it and serves on TensorFlow,
and stays off this stack to keep `make test` short.)
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


@pytest.fixture(scope="module")
def jax_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed here (make install adds it)")
    tmp = tmp_path_factory.mktemp("jax-stack")
    redis_server = RedisServer(tmp / "redis")
    redis_server.start()
    s = Stack(redis_server, tmp / "store")
    try:
        s.start(cpu_workers=1, pools=("cpu", "infer"), worker_args=("--backend", "jax"))
        yield s
    finally:
        s.stop()
        redis_server.stop()


def test_a_jax_worker_runs_a_pipeline_and_tensorflow_serves_its_model(jax_stack: Stack) -> None:
    url = jax_stack.url
    workers = {w["pool"]: w for w in Presence(jax_stack.redis.client()).workers()}
    # Given a cpu worker on JAX and a serving process on TensorFlow
    assert workers["cpu"]["backend"] == "jax" and workers["infer"]["backend"] == "tensorflow"
    pools = requests.get(f"{url}/readyz", timeout=10).json()["pools"]
    assert pools["cpu"]["backends"] == ["jax"] and pools["infer"]["backends"] == ["tensorflow"]

    # When a user uploads a CSV and runs a pipeline
    payload, frame = separable_csv()
    dataset = requests.post(f"{url}/v1/datasets", files={"file": ("blobs.csv", payload)}, timeout=30).json()
    job = submit(url, {"type": "pipeline", "params": {
        "dataset": dataset["id"], "preprocess": {"label": "label"},
        "train": {"model": {"name": "blobs", "hidden": [8]}, "epochs": 15, "batch_size": 16}}}).json()
    record = wait_for(url, job["id"], timeout=240)

    # Then it trains and evaluates on JAX (Keras in the worker's prefork child reports its backend)
    assert record["state"] == "succeeded", record["error"]
    assert record["result"]["evaluate"]["metrics"]["accuracy"] >= 0.9
    events = requests.get(f"{url}/v1/jobs/{job['id']}/events", params={"follow": 0}, timeout=10).json()
    assert any("Keras on jax" in json.dumps(e) for e in events["items"])
    # And the version says JAX trained it, and Keras exported the TF SavedModel from JAX (TensorFlow is
    # installed here) beside model.keras
    version = requests.get(f"{url}/v1/models/blobs", timeout=10).json()["versions"][0]
    assert version["keras_backend"] == "jax" and version["saved_model"] == {"exported": True}

    # When the worker predicts (a job) and the TensorFlow serving process answers online
    rows = frame.drop(columns=["label"]).head(8).to_dict(orient="records")
    batch = wait_for(url, submit(url, {"type": "predict", "params": {"model": "blobs", "instances": rows}}
                                 ).json()["id"])
    assert batch["state"] == "succeeded", batch["error"]
    online = requests.post(f"{url}/v1/models/blobs:predict", json={"instances": rows}, timeout=60)
    assert online.status_code == 200, online.text

    # Then both give the same probabilities, and the right labels
    on_jax = [p["probability"] for p in batch["result"]["predictions"]]
    on_tf = np.asarray(online.json()["predictions"]).reshape(-1)
    np.testing.assert_allclose(on_tf, on_jax, rtol=1e-5, atol=1e-6)
    assert [p["label"] for p in batch["result"]["predictions"]] == list(frame["label"].head(8))

    # And the SavedModel that JAX exported serves the same numbers in TensorFlow, without Keras
    import tensorflow as tf

    folder = next(Path(jax_stack.store).rglob("models/blobs/1"))
    transform = json.loads((folder / "meta.json").read_text())["transform"]
    encoded = encoding.encode(encoding.rows_to_frame(rows, transform), transform)
    exported = tf.saved_model.load(str(folder / "saved_model"))
    on_saved_model = np.asarray(exported.serve(encoded)).reshape(-1)
    np.testing.assert_allclose(on_saved_model, on_jax, rtol=1e-5, atol=1e-6)
