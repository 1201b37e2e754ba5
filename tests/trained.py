"""Train a small model in-process and publish it as a registry version (tests and benchmarks)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import redis

from bigmodel.ml import data, models, training
from bigmodel.ml.registry import Registry
from bigmodel.store import Store


def publish(redis_url: str, store_url: str, tenant: str, name: str, frame: pd.DataFrame, label: str,
            *, hidden: tuple[int, ...] = (16,), epochs: int = 3, seed: int = 0) -> tuple[int, Any, dict]:
    """Preprocess, train and register `frame`; returns (version, serving Keras model, transform)."""
    prepared = data.fit_preprocess(frame, {"label": label, "seed": seed})
    transform = prepared.transform
    x, y = data.split_xy(prepared.splits["train"], transform)
    classes = transform.get("label_classes")
    core = models.build_model({"task": transform["task"], "hidden": list(hidden)}, len(transform["features"]),
                              len(classes) if classes else None, seed=seed)
    training.fit(core, (x, y), None, epochs=epochs, batch_size=32, seed=seed)
    serving = models.serving_model(core, transform)
    registry = Registry(redis.Redis.from_url(redis_url), Store(store_url), tenant)
    version = registry.allocate_version(name)
    with tempfile.TemporaryDirectory() as tmp:
        serving.save(Path(tmp) / models.MODEL_FILE)
        registry.store.put_tree(registry.version_dir(name, version), tmp)
    registry.register(name, version, {"features": transform["columns"], "task": transform["task"],
                                      "transform": transform, "metrics": {}, "params": {}})
    return version, serving, transform
