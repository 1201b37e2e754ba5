"""Online inference against its baselines, one model and one set of rows, in one run.

    python -m bench.run --only inference [--quick]        (make bench-inference)

Rows: in-process `model.predict` at batch 1; the compiled model at batch 1 and 128 (the compute
ceiling); the raw Celery no-op round trip (`delay().get()`, the queue floor) and the naive queue
predict (a Celery task that loads the model and calls `predict`), both run by as many worker
processes as the infer pool has; bigmodel's V2 `infer` (binary tensors, as tritonclient sends them)
at 1, 16 and 64 clients, plus JSON tensors, TF Serving `:predict` and 128-row requests at 16. Each
load row gives requests/s, p50/p95/p99 and errors; bigmodel's rows also give rows/s and the mean batch
size (requests per forward pass) that the serving processes report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis

from bench import inference_batch
from bench.harness import Figure, Load, drive, keep_alive_caller
from bigmodel.stats import RedisMetrics
from tests.services import RedisServer, Stack
from tests.trained import publish

FEATURES = 30
PROCESSES = 2  # serving processes, and Celery worker processes for the two queue baselines
MODEL = "bench"
ROOT = Path(__file__).resolve().parent.parent


def _rows(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, FEATURES)).astype(np.float32)


def _timed(call: Callable[[], Any], n: int) -> float:
    """Mean seconds per call after one warm-up call."""
    call()
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


@contextmanager
def _environment(root: Path, quick: bool) -> Iterator[tuple[Stack, str, int, subprocess.Popen[bytes]]]:
    """A private Redis and store with the model published; the API, the infer pool, the cpu pool (batch
    predict), a Celery worker."""
    server = RedisServer(root / "redis")
    server.start()
    store = root / "store"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400 if quick else 2000, FEATURES)),
                         columns=[f"f{i}" for i in range(FEATURES)])
    frame["label"] = (frame["f0"] + frame["f1"] > 0).astype(int)
    version, _, _ = publish(server.url, str(store), "default", MODEL, frame, "label", hidden=(64, 32),
                            epochs=1 if quick else 2)
    stack = Stack(server, store, env=inference_batch.shard_env(quick))
    celery = None
    try:
        stack.start(pools=())
        stack.spawn("worker", "--pool", "infer", "--concurrency", str(PROCESSES), "--loglevel", "WARNING",
                    log="infer.log")
        cpu_pool = stack.spawn("worker", "--pool", "cpu", "--concurrency", str(PROCESSES), "--loglevel",
                               "WARNING", log="worker.log")
        _wait_servers(stack, PROCESSES)
        stack.wait_ready(("cpu",))
        celery = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.inference_tasks", "worker", "-c", str(PROCESSES),
             "-P", "prefork", "-Q", "bench_baseline", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "WARNING"],
            cwd=ROOT, env=stack.env, stdout=open(root / "celery.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True)
        yield stack, str(store), version, cpu_pool
    finally:
        if celery is not None:
            celery.terminate()
            celery.wait(30)
        stack.stop()
        server.stop()


def _wait_servers(stack: Stack, count: int, timeout: float = 180) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pools = requests.get(stack.url + "/readyz", timeout=10).json().get("pools", {})
            if pools.get("infer", {}).get("workers_online", 0) >= count:
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.3)
    raise RuntimeError("the infer pool did not come up; see " + str(stack.logs))


def _v2_bodies(rows: np.ndarray, per_request: int = 1) -> list[tuple[bytes, dict[str, str]]]:
    """Binary V2 requests of `per_request` rows, exactly as tritonclient builds them by default."""
    out = []
    for start in range(0, len(rows) - per_request + 1, per_request):
        raw = rows[start:start + per_request].astype("<f4").tobytes()
        header = json.dumps({"inputs": [{"name": "features", "shape": [per_request, FEATURES],
                                         "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}],
                             "parameters": {"binary_data_output": True}}).encode()
        out.append((header + raw, {"Inference-Header-Content-Length": str(len(header))}))
    return out


def _json_bodies(rows: np.ndarray, tfserving: bool) -> list[tuple[bytes, dict[str, str]]]:
    headers = {"Content-Type": "application/json"}
    if tfserving:
        return [(json.dumps({"instances": [row.tolist()]}).encode(), headers) for row in rows]
    return [(json.dumps({"inputs": [{"name": "features", "shape": [1, FEATURES], "datatype": "FP32",
                                     "data": row.tolist()}]}).encode(), headers) for row in rows]


def _http_caller(url: str, path: str, bodies: list[tuple[bytes, dict[str, str]]]) -> Callable[[int], None]:
    """A call(i) for drive(): POST bodies[i] on the calling thread's own keep-alive connection."""
    return keep_alive_caller(url, [("POST", path, body, headers) for body, headers in bodies])


def _batch_totals(client: redis.Redis) -> tuple[float, float]:
    fields = RedisMetrics(client).read()["bigmodel_infer_batch_size"]
    return fields.get("|sum", 0.0), fields.get("|count", 0.0)


def _interleaved(levels: dict[str, tuple[Callable[[int], Any], int, int]], client: redis.Redis,
                 seconds: float, rounds: int) -> tuple[dict[str, Load], dict[str, float]]:
    """Each level for `seconds` in all, in `rounds` slices taken in turn, so that every level sees the
    same mix of quiet and busy moments of a shared machine; also each level's mean batch size."""
    for call, clients, _ in levels.values():
        drive(call, clients, total=clients * 5)  # connections open, workers and models warm
    parts: dict[str, list[Load]] = {label: [] for label in levels}
    gathered = {label: [0.0, 0.0] for label in levels}
    for _ in range(rounds):
        for label, (call, clients, _) in levels.items():
            before = _batch_totals(client)
            parts[label].append(drive(call, clients, seconds=seconds / rounds))
            for i, (now, then) in enumerate(zip(_batch_totals(client), before, strict=True)):
                gathered[label][i] += now - then
    loads = {label: Load([t for p in ps for t in p.latencies], sum(p.errors for p in ps),
                         sum(p.seconds for p in ps), [e for p in ps for e in p.error_samples][:5])
             for label, ps in parts.items()}
    return loads, {label: (s / n if n else 0.0) for label, (s, n) in gathered.items()}


def _load_figures(name: str, load: Load, note: str = "") -> list[Figure]:
    errors = f"{load.errors} errors" + (f" ({load.error_samples[0]})" if load.error_samples else "")
    return [Figure(f"inference.{name}.rps", "requests/s", load.rate, note=f"{errors}. {note}".strip()),
            Figure(f"inference.{name}.p50", "ms", load.p50),
            Figure(f"inference.{name}.p95", "ms", load.pct(95)),
            Figure(f"inference.{name}.p99", "ms", load.pct(99))]


def run(quick: bool) -> list[Figure]:
    """Every row of the table, then the targets as ratios of rows from this run."""
    seconds = 0.5 if quick else 15.0
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp, _environment(Path(tmp), quick) as (stack, store_url, version,
                                                                                  cpu_pool):
        os.environ["BIGMODEL_REDIS_URL"] = stack.redis.url
        os.environ["BIGMODEL_STORE_URL"] = store_url
        from bench import inference_tasks
        from bigmodel.serving.predictor import Predictor
        from bigmodel.store import Store

        rows = _rows(512)
        # Quick mode overlaps the cpu pool's warm-up (importing TensorFlow, loading the model) with the rest.
        warming = inference_batch.warm(stack, MODEL, PROCESSES, FEATURES) if quick else []
        folder = f"models/{MODEL}/{version}"
        meta = Store(store_url).tenant("default").read_json(f"{folder}/meta.json")
        predictor = Predictor.from_store(Store(store_url).tenant("default"), folder, meta["transform"])
        keras_predict = _timed(lambda: predictor.serving.predict(rows[:1], verbose=0), 5 if quick else 50)
        compiled_1 = _timed(lambda: predictor.forward(rows[:1]), 200 if quick else 3000)
        compiled_128 = _timed(lambda: predictor.forward(rows[:128]), 50 if quick else 1000)
        figures += [Figure("inference.inprocess_model_predict_b1", "ms", keras_predict * 1000),
                    Figure("inference.inprocess_compiled_b1", "ms", compiled_1 * 1000),
                    Figure("inference.inprocess_compiled_b128", "rows/s", 128 / compiled_128)]

        inference_tasks.noop.delay().get(timeout=120)  # the Celery worker is up
        naive_call = lambda i: inference_tasks.naive_predict.delay(  # noqa: E731
            "default", folder, rows[i % len(rows)].tolist()).get(timeout=300)
        naive = drive(naive_call, 16, total=4 if quick else 48, warmup=2)
        figures += _load_figures("naive_queue_predict_c16", naive, "load + model.predict per task")

        noop = lambda i: inference_tasks.noop.delay().get(timeout=60)  # noqa: E731
        infer, predict = f"/v2/models/{MODEL}/infer", f"/v1/models/{MODEL}:predict"
        v2 = _http_caller(stack.url, infer, _v2_bodies(rows))
        levels: dict[str, tuple[Callable[[int], Any], int, int]] = {
            "celery_noop_c1": (noop, 1, 1), "celery_noop_c16": (noop, 16, 1),
            "v2_c1": (v2, 1, 1), "v2_c16": (v2, 16, 1), "v2_c64": (v2, 64, 1),
            "v2_json_c16": (_http_caller(stack.url, infer, _json_bodies(rows, False)), 16, 1),
            "tfserving_c16": (_http_caller(stack.url, predict, _json_bodies(rows, True)), 16, 1),
            "v2_rows128_c16": (_http_caller(stack.url, infer, _v2_bodies(rows, 128)), 16, 128),
        }
        loads, batches = _interleaved(levels, redis.Redis.from_url(stack.redis.url), seconds,
                                      rounds=1 if quick else 3)
        for label, (_, _, per) in levels.items():
            load = loads[label]
            if label.startswith("celery"):
                figures += _load_figures(label, load, f"{PROCESSES} Celery processes")
                continue
            figures += _load_figures(label, load, f"{PROCESSES} serving processes, {per} row(s) a request")
            figures.append(Figure(f"inference.{label}.rows", "rows/s", load.rate * per))
            figures.append(Figure(f"inference.{label}.mean_batch", "requests/pass", batches[label]))
        if not quick:  # the cpu pool warms after the online figures, so that it does not disturb them
            warming = inference_batch.warm(stack, MODEL, PROCESSES, FEATURES)
        figures += inference_batch.figures(stack, store_url, MODEL, predictor, cpu_pool, FEATURES, quick,
                                           warming)

    celery = {1: loads["celery_noop_c1"], 16: loads["celery_noop_c16"]}
    c1, c16, c64 = loads["v2_c1"], loads["v2_c16"], loads["v2_c64"]
    floor = celery[1].p50 + compiled_1 * 1000
    scaling = Figure("inference.target.v2_c64_vs_c16", "x", c64.rate, c16.rate, 0.9,
                     note=f"64 clients: {c64.errors} errors, p99 {c64.pct(99):.1f} ms")
    if c64.errors:
        scaling.met = False  # the target also asks for zero errors
    figures += [
        Figure("inference.target.v2_c16_vs_naive", "x", c16.rate, naive.rate, 20.0,
               note="V2 infer at 16 clients over the naive queue predict at 16 clients"),
        Figure("inference.target.v2_c16_vs_celery_noop", "x", c16.rate, celery[16].rate, 1.0,
               note="V2 infer at 16 clients over the raw Celery no-op at 16 clients"),
        Figure("inference.target.v2_c1_p50", "ms", c1.p50, floor, 1.5, goal="at_most",
               note="baseline: Celery no-op p50 at 1 client + the compiled model's 1-row time"),
        scaling,
    ]
    return figures
