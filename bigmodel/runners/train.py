"""The train job: fit a Keras model on a processed dataset and register a new version."""

from __future__ import annotations

import json
import tempfile
from typing import Any

from bigmodel.cache import sha256_file
from bigmodel.jobs.context import JobContext
from bigmodel.runners.common import datasets, processed, registry


def train(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Train from params (with `dataset` a processed dataset id)."""
    from bigmodel.ml import devices, models, training
    from bigmodel.ml.metrics import evaluate_model

    record = processed(ctx, params["dataset"])
    transform = record["transform"]
    has_validation = bool(record["splits"].get("validation"))
    # One read of the file for both splits.
    arrays = datasets(ctx).arrays(record["id"], ("train", "validation") if has_validation else ("train",))
    x, y = arrays["train"]
    val = arrays.get("validation")
    spec = {**params["model"], "task": transform["task"]}
    classes = transform.get("label_classes")
    target = models.target_stats(y) if transform["task"] == "regression" else None
    with devices.training_scope(ctx.settings.mixed_precision) as placement:  # GPUs, strategy, precision
        core = models.build_model(spec, len(transform["features"]), len(classes) if classes else None,
                                  params["optimizer"], params["learning_rate"], params["seed"], target=target)
    ctx.log(placement.describe())

    def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
        ctx.progress("epoch", epoch, total, metrics=logs)
        ctx.check_cancelled(min_interval=0)

    result = training.fit(core, (x, y), val, epochs=params["epochs"], batch_size=params["batch_size"],
                          seed=params["seed"], early_stopping=params.get("early_stopping"),
                          on_epoch=on_epoch, on_batch=ctx.check_cancelled)
    metrics = evaluate_model(result.core, transform["task"], *(val or (x, y)),
                             len(classes) if classes else None)
    reg = registry(ctx)
    name = params["model"]["name"]
    version = reg.allocate_version(name)
    folder = reg.version_dir(name, version)
    with tempfile.TemporaryDirectory() as tmp:
        saved = models.save_model(models.serving_model(result.core, transform), tmp)
        model_sha256 = sha256_file(f"{tmp}/{models.MODEL_FILE}")  # the machine caches' key
        ctx.store.put_tree(folder, tmp)
    ctx.store.write_bytes(f"{folder}/history.json", json.dumps(result.history).encode())
    reg.register(name, version, {"metrics": metrics, "params": params, "dataset": record["id"],
                                 "job": ctx.job_id, "features": transform["columns"],
                                 "task": transform["task"], "transform": transform,
                                 "model_sha256": model_sha256, **saved.meta})  # backend, SavedModel
    return {"model": name, "version": version, "metrics": metrics, "history": result.history,
            "epochs_run": result.epochs_run}


def run(ctx: JobContext) -> dict[str, Any]:
    """Job entry point."""
    return train(ctx, ctx.params)
