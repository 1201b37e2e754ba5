"""The predict job: inline instances answered in the result, or a dataset into predictions.parquet.

A dataset with more rows than settings.predict_shard_rows fans out into child predict jobs, one per
shard (`rows`), all on the version the parent resolved; the parent's second run merges their files
in order. A dataset at or under one shard, and each shard, is read and predicted a row group at a time.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pa_parquet

from bigmodel.errors import ShardFailed
from bigmodel.jobs.context import JobContext
from bigmodel.jobs.usage import rate
from bigmodel.ml import data, predictions
from bigmodel.ml.batch import RowGroups, check_range, merge, plan_shards, read_range, shard_name
from bigmodel.ml.tables import write_options
from bigmodel.ml.transform import encode_rows
from bigmodel.rebuild import epoch_of
from bigmodel.runners.common import datasets, load_predictor, registry

ARTIFACT = "predictions.parquet"


def run(ctx: JobContext) -> dict[str, Any]:
    """Predict with a model version."""
    params = ctx.params
    if params.get("instances") is not None:
        return _inline(ctx, params)
    if ctx.children is not None:
        return _merge(ctx, params, ctx.children)
    return _dataset(ctx, params)


def _inline(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    predictor, meta = load_predictor(ctx, params["model"], params.get("version") or "latest")
    transform = meta["transform"]
    started = time.perf_counter()
    frame = data.rows_to_frame(params["instances"], transform)
    encoded = encode_rows(frame, transform, params.get("missing") or "null")
    outputs = predictor.predict_encoded(encoded.x)
    entries = predictions.with_reasons(predictor.format(outputs), encoded.reasons)
    rows = len(frame)
    return {"model": params["model"], "version": meta["version"], "predictions": entries, "rows": rows,
            "null_rows": int(encoded.bad.sum()), "rows_per_second": rate(rows, time.perf_counter() - started)}


@contextmanager
def _local_file(ctx: JobContext) -> Iterator[Path]:
    """A temporary local file for an artifact being written (removed afterwards)."""
    fd, name = tempfile.mkstemp(suffix=".parquet", prefix=f"bm-{ctx.job_id}-")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _dataset(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Fan out into shards when there are more rows than one shard holds; else predict them here."""
    started = time.perf_counter()
    # Resolved once: every shard predicts with this version even if `latest` moves meanwhile.
    meta = registry(ctx).serving_meta(params["model"], params.get("version") or "latest")
    ds = datasets(ctx)
    record = ds.get(params["dataset"])
    processed = record["kind"] == "processed"
    with ds.parquet_file(record["id"]) as pf:
        groups = RowGroups.of(pf, params.get("split") if processed else None)
        shard_rows = ctx.settings.predict_shard_rows
        if params.get("rows") is None and groups.rows > shard_rows:
            shards = plan_shards(groups.sizes, shard_rows)
            ctx.log(f"{groups.rows} rows: {len(shards)} shards of at most {shard_rows}")
            version = meta["version"]
            ctx.fan_out([{"type": "predict", "params": {**params, "version": version, "rows": list(s)},
                          "priority": ctx.job.get("priority", 5)} for s in shards],
                        weights=[stop - start for start, stop in shards])
        shard = check_range(params.get("rows"), groups.rows)
        predictor, meta = load_predictor(ctx, params["model"], meta["version"])
        with _local_file(ctx) as path:
            written, null_rows = _predict_rows(ctx, predictor, meta["transform"], pf, groups, shard,
                                               processed, path)
            seconds = time.perf_counter() - started  # reading, encoding, the forward pass and the writing
            artifact = ctx.add_artifact_file(ARTIFACT, path)
    return {"model": params["model"], "version": meta["version"], "rows": written, "null_rows": null_rows,
            "rows_per_second": rate(written, seconds), "artifact": artifact["name"]}


def _predict_rows(ctx: JobContext, predictor: Any, transform: dict[str, Any], pf: pa_parquet.ParquetFile,
                  groups: RowGroups, shard: tuple[int, int], processed: bool, path: Path) -> tuple[int, int]:
    """Predict a shard's rows block by block into a Parquet file; returns (rows, rows predicted null)."""
    task, classes = transform["task"], transform.get("label_classes")
    columns = transform["features"] if processed else transform["columns"]
    missing = ctx.params.get("missing") or "null"
    total = shard[1] - shard[0]
    written = null_rows = 0
    schema = predictions.schema(task, classes, predictor.n_outputs)
    with pa_parquet.ParquetWriter(str(path), schema, **write_options(schema)) as writer:
        for first, block in read_range(pf, groups, shard, columns):
            ctx.check_cancelled()
            reasons = None
            if processed:
                x = np.column_stack([c.to_numpy() for c in block.columns]).astype(np.float32, copy=False)
                outputs = predictor.predict_normalized(x)
            else:
                encoded = encode_rows(block.to_pandas(ignore_metadata=True), transform, missing, first)
                outputs, reasons = predictor.predict_encoded(encoded.x), encoded.reasons
                null_rows += int(encoded.bad.sum())
            writer.write_table(predictions.table(task, classes, outputs, reasons))
            written += block.num_rows
            ctx.progress("predict", written, total, metrics={"null_rows": null_rows})
    return written, null_rows


def _merge(ctx: JobContext, params: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any]:
    """The parent's second run: the shards' files, in order, into one predictions.parquet."""
    for i, child in enumerate(children):
        if child.get("state") != "succeeded":
            error = (child.get("error") or {}).get("message") or child.get("state")
            name = shard_name(i, len(children), child.get("params") or {})
            raise ShardFailed(f"{name}, job {child['id']}, {child.get('state')}: {error}")
    with _local_file(ctx) as path, ExitStack() as stack:
        sources = [_open(ctx, stack, ctx.child_artifact(child, ARTIFACT)) for child in children]
        rows = merge(sources, str(path))
        artifact = ctx.add_artifact_file(ARTIFACT, path)
    # From the first shard's creation (the fan-out) to now: the whole job but its own first queueing.
    began = min(epoch_of(child.get("created_at")) for child in children)
    version = children[0]["result"]["version"]
    return {"model": params["model"], "version": version, "rows": rows, "shards": len(children),
            "null_rows": sum(int(c["result"].get("null_rows") or 0) for c in children),
            "rows_per_second": rate(rows, max(time.time() - began, 1e-9)), "artifact": artifact["name"]}


def _open(ctx: JobContext, stack: ExitStack, rel: str) -> Any:
    """A shard's file: its local path in a local store, else an open stream."""
    local = ctx.store.local_path(rel)
    return str(local) if local is not None else stack.enter_context(ctx.store.open(rel))
