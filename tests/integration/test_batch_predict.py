"""Given a stack whose predict jobs shard at 50,000 rows, batch predictions are the same sharded or not
(raw datasets and one split of a processed one), rows the model cannot take get a null prediction and a
reason (or are imputed, or fail the job), and a failed shard fails its parent with the shard named."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pa_parquet
import pytest
import requests

from bigmodel.ml.transform import encode
from tests.integration.test_jobs_http import submit, wait_for
from tests.services import RedisServer, Stack
from tests.trained import publish

pytestmark = pytest.mark.integration

SHARD_ROWS = 50_000
ROWS = 200_000
NULL_EVERY = 997  # rows whose 'a' is missing, spread over every shard


def table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n),
                          "color": rng.choice(["red", "blue", "green"], n)})
    frame["y"] = np.where(frame["a"] + frame["b"] > 0, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, object, dict]]:
    if not RedisServer.available():
        pytest.skip("needs the redis-server binary")
    root = tmp_path_factory.mktemp("batch")
    server = RedisServer(root / "redis")
    server.start()
    stack = Stack(server, root / "store", env={"BIGMODEL_PREDICT_SHARD_ROWS": str(SHARD_ROWS)})
    try:
        _, serving, transform = publish(server.url, str(root / "store"), "default", "rows", table(300, 0),
                                        "y", hidden=(4,), epochs=1)
        stack.start(cpu_workers=2)
        yield stack, serving, transform
    finally:
        stack.stop()
        server.stop()


def upload(url: str, frame: pd.DataFrame) -> str:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    r = requests.post(f"{url}/v1/datasets", files={"file": ("rows.parquet", buf.getvalue())}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]  # type: ignore[no-any-return]


def predictions(url: str, record: dict) -> pd.DataFrame:
    assert record["state"] == "succeeded", record["error"]
    r = requests.get(f"{url}/v1/jobs/{record['id']}/artifacts/predictions.parquet", timeout=60)
    assert r.status_code == 200
    return pa_parquet.read_table(io.BytesIO(r.content)).to_pandas()


def predict(url: str, timeout: float = 300, **params: object) -> dict:
    job = submit(url, {"type": "predict", "params": {"model": "rows", **params}})
    assert job.status_code == 202, job.text
    return wait_for(url, job.json()["id"], timeout=timeout)


def test_sharded_predict_equals_the_unsharded_result_row_for_row(batch) -> None:
    stack, serving, transform = batch
    frame = table(ROWS, 1).drop(columns=["y"])
    frame.loc[::NULL_EVERY, "a"] = np.nan
    dataset = upload(stack.url, frame)

    # When: the same rows, fanned out into shards, and as one shard (a job with `rows` never fans out)
    sharded = predict(stack.url, dataset=dataset)
    whole = predict(stack.url, dataset=dataset, rows=[0, ROWS])

    # Then: the same table, row for row, in order
    assert sharded["state"] == "succeeded", sharded["error"]
    assert sharded["result"]["shards"] == 5 and sharded["result"]["rows"] == ROWS  # 131,072-row groups, cut
    assert whole["result"].get("shards") is None and whole.get("children") in (None, [])
    got, expected = predictions(stack.url, sharded), predictions(stack.url, whole)
    assert len(got) == ROWS
    pd.testing.assert_frame_equal(got, expected)
    # every shard used the version the parent resolved, whatever `latest` became meanwhile
    children = [requests.get(f"{stack.url}/v1/jobs/{c}", timeout=10).json() for c in sharded["children"]]
    assert [c["params"]["version"] for c in children] == [1] * 5
    assert [c["params"]["rows"] for c in children][0] == [0, 43690]
    assert sharded["progress"]["total"] == ROWS, sharded["progress"]  # progress counts rows
    # the rows with a missing 'a' (the model dropped NAs) have a null prediction and a reason; no others
    bad = frame["a"].isna().to_numpy()
    assert sharded["result"]["null_rows"] == int(bad.sum())
    assert got["probability"].isna().to_numpy().tolist() == bad.tolist()
    assert set(got.loc[bad, "reason"]) == {"column 'a': missing value"}
    assert got.loc[~bad, "reason"].isna().all()
    # and the good rows are the in-process model's answers, at both ends of the table
    for rows in (slice(1, 1000), slice(ROWS - 1000, ROWS)):
        part = frame.iloc[rows]
        keep = part["a"].notna().to_numpy()
        want = serving(encode(part[keep], transform)).numpy().reshape(-1)
        np.testing.assert_allclose(got["probability"].iloc[rows][keep], want, rtol=1e-5, atol=1e-6)


def test_missing_modes_null_impute_fail(batch) -> None:
    stack, _, transform = batch
    frame = pd.DataFrame({"a": [0.5, None, -0.5, 1.0], "b": [0.1, 0.2, 0.3, 0.4],
                          "color": ["red", "blue", "purple", "green"]})
    dataset = upload(stack.url, frame)

    record = predict(stack.url, dataset=dataset)
    assert not record.get("children") and record["result"].get("shards") is None  # one shard: in-process
    null = predictions(stack.url, record)
    assert null["probability"].isna().tolist() == [False, True, True, False]
    assert [None if pd.isna(v) else v for v in null["reason"]] == [None, "column 'a': missing value",
                                       "column 'color': category never seen in training", None]

    imputed = predictions(stack.url, predict(stack.url, dataset=dataset, missing="impute"))
    assert imputed["probability"].notna().all() and imputed["reason"].isna().all()
    filled = frame.assign(a=frame["a"].fillna(transform["fill"]["a"]),
                          color=frame["color"].replace("purple", transform["fill"]["color"]))
    np.testing.assert_allclose(imputed["probability"], predictions(stack.url, predict(
        stack.url, dataset=upload(stack.url, filled)))["probability"], rtol=1e-6)

    failed = predict(stack.url, dataset=dataset, missing="fail")
    assert failed["state"] == "failed"
    assert "column 'a'" in failed["error"]["message"] and "(row 1)" in failed["error"]["message"]

    instances = [{k: None if pd.isna(v) else v for k, v in row.items()} for row in frame.to_dict("records")]
    inline = predict(stack.url, instances=instances)
    assert inline["state"] == "succeeded", inline["error"]
    entries = inline["result"]["predictions"]
    assert entries[1] == {"probability": None, "label": None, "reason": "column 'a': missing value"}
    assert entries[0]["probability"] is not None and inline["result"]["null_rows"] == 2


def test_a_failed_shard_fails_the_parent_naming_it(batch) -> None:
    stack, _, _ = batch
    frame = table(120_000, 2).drop(columns=["y"])
    frame.loc[70_000, "a"] = np.nan  # in the second shard only
    record = predict(stack.url, dataset=upload(stack.url, frame), missing="fail")
    assert record["state"] == "failed"
    message = record["error"]["message"]
    assert record["error"]["type"] == "shard_failed", record["error"]
    assert "shard 2 of 3" in message and "column 'a'" in message and "(row 70000)" in message, message


def test_sharded_predict_on_one_split_of_a_processed_dataset(batch) -> None:
    stack, serving, _ = batch
    raw = upload(stack.url, table(150_000, 3))
    job = submit(stack.url, {"type": "preprocess", "params": {"dataset": raw, "label": "y"}}).json()
    processed = wait_for(stack.url, job["id"], timeout=180)
    assert processed["state"] == "succeeded", processed["error"]
    dataset = processed["result"]["dataset"]

    sharded = predict(stack.url, dataset=dataset, split="train")
    rows = sharded["result"]["rows"]
    whole = predict(stack.url, dataset=dataset, split="train", rows=[0, rows])
    assert sharded["result"]["shards"] == 3 and rows == processed["result"]["rows"]["train"]
    got = predictions(stack.url, sharded)
    pd.testing.assert_frame_equal(got, predictions(stack.url, whole))

    from bigmodel.ml.datasets import Datasets
    from bigmodel.store import Store

    stored = Datasets(stack.redis.client(), Store(str(stack.store)), "default")
    x, _ = stored.arrays(dataset, ("train",))["train"]
    want = serving.get_layer("core")(x[-500:]).numpy().reshape(-1)
    np.testing.assert_allclose(got["probability"].to_numpy()[-500:], want, rtol=1e-5, atol=1e-6)
