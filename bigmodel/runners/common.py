"""Helpers the ML runners share: loading datasets and model versions from the tenant's store."""

from __future__ import annotations

from typing import Any

from bigmodel.cache import machine_cache
from bigmodel.errors import DataError
from bigmodel.jobs.context import JobContext
from bigmodel.ml.datasets import Datasets
from bigmodel.ml.registry import Registry


def datasets(ctx: JobContext) -> Datasets:
    """The job tenant's datasets."""
    return Datasets(ctx.jobs.r, ctx.store_root, ctx.tenant, cache=machine_cache(ctx.settings))


def registry(ctx: JobContext) -> Registry:
    """The job tenant's model registry."""
    return Registry(ctx.jobs.r, ctx.store_root, ctx.tenant)


def processed(ctx: JobContext, dataset_id: str) -> dict[str, Any]:
    """A processed dataset's record; a raw one is a clear error."""
    record = datasets(ctx).get(dataset_id)
    if record.get("kind") != "processed":
        raise DataError(f"dataset {dataset_id} is raw: run a preprocess job on it first")
    return record


def load_predictor(ctx: JobContext, name: str, version: Any) -> tuple[Any, dict[str, Any]]:
    """The Predictor of a model version, from this process's model cache, and its serving metadata."""
    from bigmodel.serving.repository import ModelRepository

    return ModelRepository(ctx.jobs.r, ctx.store_root, ctx.settings).get(ctx.tenant, name, version)
