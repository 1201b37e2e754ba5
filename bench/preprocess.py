"""preprocess: upload + `preprocess` of a generated CSV against the plain pandas script a user would write.

The CSV (1,000,000 rows x 30 columns, about 550 MB, 0.2% of the feature values missing) is made once
with a fixed seed and kept under var/bench-data. Both sides do the same steps: read, drop rows with a
missing value, shuffle and split 80/10/10, standardise with the train split's statistics, write
Parquet. Time is end to end (the script's interpreter start included; for bigmodel from the first
byte of the upload to the job seen finished); memory is the script's peak RSS against the sum of the
peak RSS of every API and worker process (an upper bound of what they held at once).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from bench.harness import Figure
from bench.support import (
    DATA,
    ScriptRun,
    cpu_seconds,
    peak_rss_mb,
    process_tree,
    reset_peaks,
    run_job,
    run_script,
    running_seconds,
    running_stack,
    upload,
)

FEATURES = 29
ROUNDS = 2
MISSING_SHARE = 0.002

SCRIPT = """
import sys
import pandas as pd

source, out = sys.argv[1], sys.argv[2]
df = pd.read_csv(source)
df = df.dropna()
df = df.sample(frac=1.0, random_state=0)  # shuffle, then slice into splits
features = df.columns.drop("label")
a, b = int(len(df) * 0.8), int(len(df) * 0.9)
train = df.iloc[:a]
df[features] = (df[features] - train[features].mean()) / train[features].std()
df.iloc[:a].to_parquet(f"{out}/train.parquet")
df.iloc[a:b].to_parquet(f"{out}/validation.parquet")
df.iloc[b:].to_parquet(f"{out}/test.parquet")
print(len(df))
"""


def generate(rows: int, seed: int = 0) -> Path:
    """The benchmark CSV for this size (made once): float features with gaps and a 0/1 label."""
    path = DATA / f"preprocess-{rows}x{FEATURES + 1}-seed{seed}.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    columns = {}
    for j in range(FEATURES):
        values = rng.normal(rng.uniform(-50, 50), rng.uniform(0.5, 20), rows)
        columns[f"f{j}"] = pa.array(values, mask=rng.random(rows) < MISSING_SHARE)
    signal = np.nan_to_num(columns["f0"].to_numpy(zero_copy_only=False))
    columns["label"] = pa.array((signal + rng.normal(0, 10, rows) > np.median(signal)).astype(np.int64))
    tmp = path.with_suffix(".tmp")
    pa_csv.write_csv(pa.table(columns), tmp, pa_csv.WriteOptions(quoting_style="none"))
    tmp.rename(path)
    return path


def preprocess_job(dataset: str) -> dict[str, object]:
    """The job the script's steps correspond to (defaults: dropna, standard, 80/10/10, seed 0)."""
    return {"type": "preprocess", "params": {"dataset": dataset, "label": "label"}}


def run(quick: bool) -> list[Figure]:
    """The script and the same file through a private stack (one API, one worker process), alternately.

    Each side runs ROUNDS times and its fastest run counts: the machine is shared, and a run can only
    be slowed by what else is running, never sped up. Each upload appends blank lines to the file, so
    every round is a new dataset (same table, new sha256) and nothing is served from a cache.
    """
    rows = 20_000 if quick else 1_000_000
    rounds = 1 if quick else ROUNDS
    csv = generate(rows)
    size = csv.stat().st_size
    env = {"BIGMODEL_MAX_UPLOAD_BYTES": str(size + (1 << 20))}
    script: list[ScriptRun] = []
    ours, uploads, jobs, cpus, ours_mb = [], [], [], [], 0.0
    with running_stack(env) as stack, tempfile.TemporaryDirectory(prefix="bm-bench-script-") as out:
        # Warm: a service has imported its libraries long before a user's upload arrives.
        run_job(stack.url, preprocess_job(upload(stack.url, generate(2_000))[1]["id"]))
        for round_ in range(1, rounds + 1):
            script.append(run_script(SCRIPT, str(csv), out))
            pids = process_tree([p.pid for p in stack.procs])
            reset_peaks(pids)
            cpu = cpu_seconds(pids)
            start = time.perf_counter()
            status, body = upload(stack.url, csv, trailer=b"\n" * round_)
            uploads.append(time.perf_counter() - start)
            if status != 201:
                raise RuntimeError(f"upload answered {status}: {body}")
            record = run_job(stack.url, preprocess_job(body["id"]))
            ours.append(time.perf_counter() - start)
            jobs.append(running_seconds(record))
            cpus.append(cpu_seconds(pids) - cpu)
            ours_mb = max(ours_mb, peak_rss_mb(process_tree([p.pid for p in stack.procs])))

    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    setup = f"{rows:,} rows x {FEATURES + 1} columns, {size / 1e6:.0f} MB CSV; 1 API + 1 worker process"
    best, fastest = ours.index(min(ours)), min(script, key=lambda r: r.seconds)
    targets = (None, None) if quick else (0.5, 1.0)  # a smoke run's ratios mean nothing
    timing = (f"{setup}; best of {rounds}: script {listed([r.seconds for r in script])} s, "
              f"upload + job {listed(ours)} s")
    return [
        Figure("preprocess.end_to_end", "s", ours[best], baseline=fastest.seconds, target=targets[0],
               goal="at_most", note=timing),
        Figure("preprocess.peak_rss", "MiB", ours_mb, baseline=max(r.peak_mb for r in script),
               target=targets[1], goal="at_most",
               note="sum of the peak RSS of every API and worker process vs the script's"),
        Figure("preprocess.cpu", "s", cpus[best], baseline=fastest.cpu,
               note="CPU seconds of the API and worker processes vs the script's (what 2 cores must share)"),
        Figure("preprocess.upload", "s", uploads[best], note="streamed multipart POST until the 201"),
        Figure("preprocess.job", "s", jobs[best], note="preprocess job, started -> finished"),
    ]
