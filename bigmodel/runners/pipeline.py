"""The pipeline job: preprocess -> train -> evaluate in one job, each stage named in progress and errors."""

from __future__ import annotations

from typing import Any

from bigmodel.jobs.context import JobContext
from bigmodel.runners.evaluate import evaluate
from bigmodel.runners.preprocess import preprocess
from bigmodel.runners.train import train


def run(ctx: JobContext) -> dict[str, Any]:
    """Run the stages in order; a failing stage fails the job with its name."""
    params = ctx.params
    out: dict[str, Any] = {}
    with ctx.stage("preprocess"):
        out["preprocess"] = preprocess(ctx, {**params["preprocess"], "dataset": params["dataset"]})
    with ctx.stage("train"):
        out["train"] = train(ctx, {**params["train"], "dataset": out["preprocess"]["dataset"]})
    if params.get("evaluate", True):
        with ctx.stage("evaluate"):
            out["evaluate"] = evaluate(ctx, {"model": out["train"]["model"],
                                             "version": out["train"]["version"],
                                             "dataset": out["preprocess"]["dataset"], "split": "test"})
    return out
