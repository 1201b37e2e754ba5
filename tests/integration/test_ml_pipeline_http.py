"""Given the stack, a user uploads a CSV, runs a pipeline, predicts on raw rows and promotes the model."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import requests

from tests.integration.test_jobs_http import submit, wait_for

pytestmark = pytest.mark.integration


def separable_csv(n: int = 300, seed: int = 0) -> tuple[bytes, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({
        "a": rng.normal(0, 1, n) + 6 * y, "b": rng.normal(0, 1, n) - 3 * y,
        "color": rng.choice(["red", "blue"], n), "label": np.where(y == 1, "yes", "no"),
    })
    return frame.to_csv(index=False).encode(), frame


def test_upload_pipeline_predict_evaluate_promote(stack) -> None:
    payload, frame = separable_csv()
    up = requests.post(f"{stack.url}/v1/datasets", files={"file": ("blobs.csv", payload)}, timeout=30)
    assert up.status_code == 201, up.text
    dataset = up.json()
    assert dataset["rows"] == 300 and {c["name"] for c in dataset["columns"]} == set(frame.columns)

    job = submit(stack.url, {"type": "pipeline", "params": {
        "dataset": dataset["id"], "preprocess": {"label": "label"},
        "train": {"model": {"name": "blobs", "hidden": [8]}, "epochs": 15, "batch_size": 16}}}).json()
    record = wait_for(stack.url, job["id"], timeout=240)
    assert record["state"] == "succeeded", record["error"]
    result = record["result"]
    # Classes 6 std apart on `a`: the Bayes error is ~0.1%, so 0.9 on the held-out split is safe.
    assert result["evaluate"]["metrics"]["accuracy"] >= 0.9
    assert result["preprocess"]["label_classes"] == ["no", "yes"]
    assert result["train"]["version"] == 1

    rows = frame.drop(columns=["label"]).head(5)
    pred = wait_for(stack.url, submit(stack.url, {"type": "predict", "params": {
        "model": "blobs", "instances": rows.to_dict(orient="records")}}).json()["id"])
    assert pred["state"] == "succeeded", pred["error"]
    labels = [p["label"] for p in pred["result"]["predictions"]]
    assert len(labels) == 5 and labels == list(frame["label"].head(5))

    ev = wait_for(stack.url, submit(stack.url, {"type": "evaluate", "params": {
        "model": "blobs", "dataset": result["preprocess"]["dataset"]}}).json()["id"])
    assert ev["result"]["metrics"]["accuracy"] == pytest.approx(result["evaluate"]["metrics"]["accuracy"])

    raw = wait_for(stack.url, submit(stack.url, {"type": "predict", "params": {
        "model": "blobs", "dataset": dataset["id"]}}).json()["id"])
    table = pd.read_parquet(io.BytesIO(requests.get(
        f"{stack.url}/v1/jobs/{raw['id']}/artifacts/predictions.parquet", timeout=10).content))
    assert len(table) == 300 and (table["label"] == frame["label"]).mean() >= 0.9

    moved = requests.post(f"{stack.url}/v1/models/blobs/aliases/production", json={"version": 1}, timeout=5)
    assert moved.status_code == 200
    model = requests.get(f"{stack.url}/v1/models/blobs", timeout=5).json()
    assert model["aliases"]["production"] == 1 and model["alias_history"][0]["to"] == 1


def test_bad_label_fails_the_job_with_the_column_named(stack) -> None:
    payload, _ = separable_csv(50, seed=1)
    ds = requests.post(f"{stack.url}/v1/datasets", files={"file": ("b.csv", payload)}, timeout=30).json()
    job = submit(stack.url, {"type": "preprocess", "params": {"dataset": ds["id"], "label": "nope"}}).json()
    record = wait_for(stack.url, job["id"])
    assert record["state"] == "failed" and "nope" in record["error"]["message"]
    assert wait_for(stack.url, submit(stack.url, {"type": "ping", "params": {}}).json()["id"])["state"] \
        == "succeeded"


def test_empty_upload_is_rejected_and_leaves_nothing(stack) -> None:
    r = requests.post(f"{stack.url}/v1/datasets", files={"file": ("e.csv", b"")}, timeout=10)
    assert r.status_code == 400 and "empty" in r.json()["detail"]
