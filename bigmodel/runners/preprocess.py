"""The preprocess job: clean, encode, normalise and split a raw dataset (cached by input and params)."""

from __future__ import annotations

from typing import Any

from bigmodel.errors import DataError, NotFound
from bigmodel.jobs.context import JobContext
from bigmodel.ml import data
from bigmodel.ml.datasets import processed_id
from bigmodel.names import safe_name
from bigmodel.runners.common import datasets


def preprocess(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Run preprocessing for params (with `dataset` a raw dataset id)."""
    ds = datasets(ctx)
    source = ds.get(params["dataset"])
    if source.get("kind") != "raw":
        raise DataError(f"dataset {params['dataset']} is already processed; give the raw dataset")
    fit_params = {k: v for k, v in params.items() if k != "dataset"}
    out_id = processed_id(source["sha256"], fit_params)
    try:
        record = ds.get(out_id)
        ctx.log("same dataset and params as an earlier preprocess: reusing its output")
    except NotFound:
        ctx.progress("fit", 0, 2)
        with ds.columns(source["id"]) as columns:  # read column by column, never the whole table
            prepared = data.fit_preprocess(columns, fit_params)
        ctx.check_cancelled()
        ctx.progress("write", 1, 2)
        record = ds.save_processed(out_id, prepared, source["id"], fit_params,
                                   safe_name(f"{source['name']}-processed", out_id[:12]))
        ctx.progress("done", 2, 2)
    transform = record["transform"]
    result = {"dataset": out_id, "rows": record["splits"], "features": transform["features"],
              "task": transform["task"]}
    if transform.get("label_classes") is not None:
        result["label_classes"] = transform["label_classes"]
    return result


def run(ctx: JobContext) -> dict[str, Any]:
    """Job entry point."""
    return preprocess(ctx, ctx.params)
