"""Two machines on one S3 store: each worker downloads a model and a dataset once, into its own cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bigmodel.cache import Cache
from bigmodel.store import Store
from tests.integration.test_jobs_http import submit, wait_for
from tests.integration.test_ml_pipeline_http import separable_csv
from tests.s3server import S3Server
from tests.services import RedisServer, Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


def downloads(s3: S3Server) -> tuple[int, int]:
    """GETs that reached S3 for model files and dataset Parquet files."""
    return s3.gets("/model.keras"), s3.gets("/data.parquet")


def test_round_trip_on_s3_with_a_cache_per_machine(s3: S3Server, tmp_path: Path) -> None:
    # Given Redis, the API and worker "machine A" (its own cache folder), with the store on S3
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    stack = Stack(redis_server, tmp_path / "unused-store", env={
        **s3.env, "BIGMODEL_STORE_URL": s3.url("roundtrip")})
    try:
        stack.spawn("api", "--port", str(stack.port), log="api.log")

        def machine(name: str) -> subprocess.Popen[bytes]:
            return stack.spawn("worker", "--pool", "cpu", "--concurrency", "1", "--name", name,
                               "--loglevel", "INFO", log=f"{name}.log",
                               env={"BIGMODEL_CACHE_DIR": str(tmp_path / f"cache-{name}")})

        worker_a = machine("machine-a")
        stack.wait_ready(("cpu",), timeout=180)

        # When a user uploads, runs a pipeline and predicts twice on machine A
        payload, _ = separable_csv(200)
        up = requests.post(f"{stack.url}/v1/datasets", files={"file": ("blobs.csv", payload)}, timeout=60)
        assert up.status_code == 201, up.text
        dataset = up.json()["id"]
        pipeline = submit(stack.url, {"type": "pipeline", "params": {
            "dataset": dataset, "preprocess": {"label": "label"},
            "train": {"model": {"name": "blobs", "hidden": [4]}, "epochs": 2, "batch_size": 32}}}).json()
        record = wait_for(stack.url, pipeline["id"], timeout=300)
        assert record["state"] == "succeeded", record["error"]
        assert record["worker"].startswith("machine-a@")

        predict = {"type": "predict", "params": {"model": "blobs", "dataset": dataset}}
        first = wait_for(stack.url, submit(stack.url, predict).json()["id"], timeout=180)
        assert first["state"] == "succeeded", first["error"]
        assert first["result"]["rows"] == 200
        before = downloads(s3)
        assert before[0] >= 1 and before[1] >= 2  # the model and both Parquet files came from S3 once
        second = wait_for(stack.url, submit(stack.url, predict).json()["id"], timeout=180)
        # Then the second predict on the same machine reads neither file from S3 again
        assert second["state"] == "succeeded" and second["worker"].startswith("machine-a@")
        assert downloads(s3) == before

        # When machine A goes away and machine B (its own, empty cache) takes the next predicts
        worker_a.terminate()
        worker_a.wait(60)
        machine("machine-b")
        third = wait_for(stack.url, submit(stack.url, predict).json()["id"], timeout=240)
        assert third["state"] == "succeeded", third["error"]
        assert third["worker"].startswith("machine-b@")
        after_b = downloads(s3)
        # Then B downloaded the model and the raw Parquet once each ...
        assert after_b[0] > before[0] and after_b[1] > before[1]
        fourth = wait_for(stack.url, submit(stack.url, predict).json()["id"], timeout=180)
        # ... and not again for its second predict
        assert fourth["state"] == "succeeded" and downloads(s3) == after_b
        assert os.listdir(tmp_path / "cache-machine-a" / "objects")
        assert os.listdir(tmp_path / "cache-machine-b" / "objects")
    finally:
        stack.stop()
        redis_server.stop()


RACER = """
import sys, time
from pathlib import Path
from bigmodel.cache import Cache
from bigmodel.store import Store
cache_dir, url, endpoint, digest, go = sys.argv[1:]
store = Store(url, options={"endpoint_url": endpoint})
while not Path(go).exists():
    time.sleep(0.01)
cache = Cache(cache_dir, max_bytes=2**30)
path = cache.fetch(store, "blob/model.keras", digest)
print(cache.stats.downloads, path.stat().st_size)
"""


def test_processes_on_one_machine_race_for_one_file_and_download_it_once(s3: S3Server, tmp_path: Path,
                                                                         monkeypatch) -> None:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    store = Store(s3.url("race"), options={"endpoint_url": s3.endpoint})
    data = os.urandom(12 * 2**20)
    store.write_bytes("blob/model.keras", data)
    digest = hashlib.sha256(data).hexdigest()
    before = s3.gets("/race/blob/model.keras")
    # Given four worker processes of one machine, released at the same moment on an empty cache
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "cache"), s3.url("race"),
                               s3.endpoint, digest, str(go)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **s3.env}) for _ in range(4)]
    go.touch()
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    # Then exactly one of them downloaded, the others used its finished file
    assert sorted(int(o[0]) for o in outputs) == [0, 0, 0, 1]
    assert all(int(o[1]) == len(data) for o in outputs)
    one_download = s3.gets("/race/blob/model.keras") - before
    # ... and S3 served the object once: a lone download into a fresh cache takes as many GETs
    Cache(tmp_path / "fresh", max_bytes=2**30).fetch(store, "blob/model.keras", digest)
    assert s3.gets("/race/blob/model.keras") - before == 2 * one_download
