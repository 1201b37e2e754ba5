"""The predict job: inline instances answered in the result, or a dataset into predictions.parquet."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from bigmodel.jobs.context import JobContext
from bigmodel.jobs.usage import rate
from bigmodel.ml import data
from bigmodel.ml.datasets import frame_to_parquet
from bigmodel.runners.common import datasets, load_predictor


def run(ctx: JobContext) -> dict[str, Any]:
    """Predict with a model version."""
    params = ctx.params
    predictor, meta = load_predictor(ctx, params["model"], params.get("version") or "latest")
    transform = meta["transform"]
    base = {"model": params["model"], "version": meta["version"]}
    started = time.perf_counter()
    if params.get("instances") is not None:
        frame = data.rows_to_frame(params["instances"], transform)
        outputs = predictor.predict_encoded(data.encode(frame, transform))
        rows = len(frame)
        return {**base, "predictions": predictor.format(outputs), "rows": rows,
                "rows_per_second": rate(rows, time.perf_counter() - started)}
    ds = datasets(ctx)
    record = ds.get(params["dataset"])
    if record["kind"] == "processed":
        frame = ds.frame(record["id"], params.get("split"))
        x, _ = data.split_xy(frame, transform)
        outputs = predictor.predict_normalized(x)
    else:
        outputs = predictor.predict_encoded(data.encode(ds.frame(record["id"]), transform))
    seconds = time.perf_counter() - started  # reading, encoding and the forward pass, not the writing
    ctx.check_cancelled()
    table = pd.DataFrame(predictor.outputs_to_columns(outputs))
    artifact = ctx.add_artifact("predictions.parquet", frame_to_parquet(table))
    return {**base, "rows": int(len(table)), "rows_per_second": rate(len(table), seconds),
            "artifact": artifact["name"]}
