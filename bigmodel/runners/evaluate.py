"""The evaluate job: metrics of a model version on a split of a processed dataset."""

from __future__ import annotations

import time
from typing import Any

from bigmodel.errors import DataError
from bigmodel.jobs.context import JobContext
from bigmodel.jobs.usage import rate
from bigmodel.ml import data
from bigmodel.runners.common import datasets, load_predictor, processed


def evaluate(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Evaluate params["model"] at params["version"] on params["dataset"]'s split."""
    from bigmodel.ml.metrics import evaluate_model

    record = processed(ctx, params["dataset"])
    predictor, meta = load_predictor(ctx, params["model"], params.get("version", "latest"))
    transform = meta["transform"]
    x, y = data.split_xy(datasets(ctx).frame(record["id"], params.get("split", "test")), transform)
    if y is None:
        raise DataError(f"dataset {record['id']} has no label column {transform.get('label')!r} "
                        "to evaluate on")
    classes = transform.get("label_classes")
    started = time.perf_counter()
    metrics = evaluate_model(predictor.core, transform["task"], x, y, len(classes) if classes else None)
    seconds = time.perf_counter() - started
    return {"model": params["model"], "version": meta["version"], "split": params.get("split", "test"),
            "metrics": metrics, "rows": int(len(y)), "rows_per_second": rate(len(y), seconds)}


def run(ctx: JobContext) -> dict[str, Any]:
    """Job entry point."""
    return evaluate(ctx, ctx.params)
