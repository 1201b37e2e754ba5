"""The sharded batch predict figure of the inference benchmark: a predict job over N x 30 rows stored as
Parquet (store I/O included: the job reads them from the store and writes predictions.parquet there),
against the in-process compiled model over the same rows already in memory, using all the cores."""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import redis

from bench.harness import Figure
from bench.support import peak_rss_mb, process_tree, reset_peaks, run_job, submit_job, wait_job
from tests.services import Stack

ROWS = 1_000_000
QUICK_ROWS = 20_000
QUICK_SHARD_ROWS = 5_000  # quick mode still fans out (4 shards), in a second or two


def shard_env(quick: bool) -> dict[str, str]:
    """The stack's setting for the shard size: the default (250,000) in a full run, tiny in quick mode."""
    return {"BIGMODEL_PREDICT_SHARD_ROWS": str(QUICK_SHARD_ROWS)} if quick else {}


def _store_rows(stack: Stack, store_url: str, frame: pd.DataFrame) -> str:
    """Upload the rows as Parquet straight into the store (not timed); returns the dataset id."""
    from bigmodel.ml.datasets import Datasets
    from bigmodel.store import Store

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    datasets = Datasets(redis.Redis.from_url(stack.redis.url), Store(store_url), "default")
    record, _ = datasets.ingest_bytes(buf.getvalue(), "batch.parquet", "batch", max_bytes=2**34)
    return str(record["id"])


def _seconds(call: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def warm(stack: Stack, model: str, processes: int, features: int) -> list[str]:
    """Submit one-row predict jobs that load the model in the cpu pool's processes (not waited for here):
    the figure is the steady state of the pool's model cache, as the ceiling's is of a loaded model."""
    body = {"type": "predict", "params": {"model": model, "instances": [[0.0] * features]}}
    return [submit_job(stack.url, body) for _ in range(2 * processes)]


def figures(stack: Stack, store_url: str, model: str, predictor: Any, cpu_pool: subprocess.Popen[bytes],
            features: int, quick: bool, warming: list[str]) -> list[Figure]:
    """Run the batch predict job and the in-process ceiling on the same rows, both warm: the job's second
    run is timed, when every process of the pool has the model in its cache."""
    for job_id in warming:
        wait_job(stack.url, job_id)
    n = QUICK_ROWS if quick else ROWS
    x = np.random.default_rng(7).normal(size=(n, features)).astype(np.float32)
    dataset = _store_rows(stack, store_url, pd.DataFrame(x, columns=[f"f{i}" for i in range(features)]))

    runs = 1 if quick else 3  # best of three: on shared cores one run may catch someone else's burst
    predictor.forward(x[:1024])  # warm
    ceiling = n / min(_seconds(lambda: predictor.forward(x)) for _ in range(runs))

    job = {"type": "predict", "params": {"model": model, "dataset": dataset}}
    run_job(stack.url, job)  # every process of the pool has the model loaded after this one (not timed)
    pids = process_tree([cpu_pool.pid])
    reset_peaks(pids)
    records: list[dict[str, Any]] = []
    seconds = min(_seconds(lambda: records.append(run_job(stack.url, job))) for _ in range(runs))
    peak = peak_rss_mb(process_tree([cpu_pool.pid]))
    record = records[-1]
    shards = record["result"].get("shards") or 1
    rate = n / seconds
    note = (f"{n:,} x {features} Parquet in the store -> predictions.parquet in the store, {shards} "
            f"shards on the cpu pool, submit to final record {seconds:.2f} s (best of {runs}); the "
            "ceiling is Predictor.forward over the same rows in memory in this process (best of as many)")
    return [Figure("inference.batch_predict.rows", "rows/s", rate, note=note),
            Figure("inference.batch_compiled_ceiling.rows", "rows/s", ceiling),
            Figure("inference.batch_predict.peak_rss", "MiB", peak,
                   note="sum of the peak RSS of the cpu pool's processes (its parent and its workers)"),
            Figure("inference.target.batch_predict_vs_compiled", "x", rate, ceiling, 0.7,
                   note=f"sharded batch predict over the in-process compiled ceiling; peak RSS "
                   f"{peak:.0f} MiB")]
