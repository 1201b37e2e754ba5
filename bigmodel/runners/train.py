"""The train job: fit a Keras model on a processed dataset and register its version.

Run twice (a retry, a take-over, a hand-over), a job registers one version: the number is allocated
once per job and reused, training resumes from the job's last epoch checkpoint, and a version this
job already registered is returned as it is.
"""

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
    from bigmodel.ml.checkpoint import Checkpoints, merge_history
    from bigmodel.ml.metrics import evaluate_model

    record = processed(ctx, params["dataset"])
    transform = record["transform"]
    reg = registry(ctx)
    name = params["model"]["name"]
    version = reg.allocate_version(name, job=ctx.job_id)
    folder = reg.version_dir(name, version)
    done = _registered_by(ctx, name, folder)
    if done is not None:
        ctx.log(f"version {version} of {name} was registered by an earlier attempt of this job")
        return done

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

    checkpoints = Checkpoints(ctx.store, f"{ctx.checkpoint_dir}/{name}")
    start, history, complete = checkpoints.restore(core)
    if start:
        ctx.log(f"resuming from the checkpoint of epoch {start}")

    def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
        ctx.progress("epoch", epoch, total, metrics=logs)
        ctx.check_cancelled(min_interval=0)

    epochs_run = 0
    if not complete and start < params["epochs"]:
        result = training.fit(core, (x, y), val, epochs=params["epochs"], batch_size=params["batch_size"],
                              seed=params["seed"], early_stopping=params.get("early_stopping"),
                              on_epoch=on_epoch, on_batch=ctx.check_cancelled, initial_epoch=start,
                              callbacks=[checkpoints.callback(history, fence=ctx.check_current)])
        history, epochs_run = merge_history(history, result.history), result.epochs_run
        # The final weights (the best ones under early stopping): a later attempt need not train again.
        checkpoints.save(core, start + epochs_run, history, complete=True)
    metrics = evaluate_model(core, transform["task"], *(val or (x, y)), len(classes) if classes else None)
    ctx.ensure_current()  # fencing: a superseded attempt writes no version files
    with tempfile.TemporaryDirectory() as tmp:
        saved = models.save_model(models.serving_model(core, transform), tmp)
        model_sha256 = sha256_file(f"{tmp}/{models.MODEL_FILE}")  # the machine caches' key
        ctx.store.put_tree(folder, tmp)
    ctx.store.write_bytes(f"{folder}/history.json", json.dumps(history).encode())
    ctx.ensure_current()  # and none registers one
    reg.register(name, version, {"metrics": metrics, "params": params, "dataset": record["id"],
                                 "job": ctx.job_id, "attempt": ctx.attempt, "features": transform["columns"],
                                 "task": transform["task"], "transform": transform,
                                 "model_sha256": model_sha256, **saved.meta})  # backend, SavedModel
    return {"model": name, "version": version, "metrics": metrics, "history": history,
            "epochs_run": epochs_run, "resumed_from": start}


def _registered_by(ctx: JobContext, name: str, folder: str) -> dict[str, Any] | None:
    """The result of this job's version if an earlier attempt already registered it."""
    try:
        meta = ctx.store.read_json(f"{folder}/meta.json")
    except FileNotFoundError:
        return None
    if meta.get("job") != ctx.job_id:
        return None
    try:
        history = ctx.store.read_json(f"{folder}/history.json")
    except FileNotFoundError:
        history = {}
    return {"model": name, "version": meta["version"],
            "metrics": meta.get("metrics"), "history": history, "epochs_run": 0, "resumed_from": None}


def run(ctx: JobContext) -> dict[str, Any]:
    """Job entry point."""
    return train(ctx, ctx.params)
