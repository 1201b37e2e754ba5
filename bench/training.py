"""training: a `train` job's running time against the same fit done in-process with plain Keras.

Same data (the processed dataset's train and validation splits), same model (Dense 64-32 relu, a
sigmoid output, Adam 1e-3), epochs, batch size and seed. The baseline times fit + evaluate + save in
a fresh interpreter (imports and data loading not timed); the job is timed started -> finished from
its record, so it includes reading the dataset, progress events, the metrics, the serving wrapper,
model.keras and the SavedModel export, and publishing the version. Both sides run twice, alternately;
the faster run of each counts (the machine is shared, and a run can only be slowed, not sped up).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from bench.harness import Figure
from bench.support import DATA, run_job, run_script, running_seconds, running_stack, upload

ROUNDS = 2

BASELINE = """
import json, os, sys, time
import numpy as np
import pyarrow.parquet as pq
import keras

path, out = sys.argv[1], sys.argv[2]
epochs, batch, seed = (int(v) for v in sys.argv[3:6])
table = pq.read_table(path)
split = np.asarray(table.column("__split__").to_pylist())
names = [n for n in table.column_names if n not in ("label", "__split__")]
x = np.column_stack([table.column(n).to_numpy() for n in names]).astype("float32")
y = table.column("label").to_numpy()
train, val = split == "train", split == "validation"
keras.utils.set_random_seed(seed)
Dense = keras.layers.Dense
model = keras.Sequential([keras.Input((x.shape[1],)), Dense(64, activation="relu"),
                          Dense(32, activation="relu"), Dense(1, activation="sigmoid")])
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
model.fit(x[train], y[train], validation_data=(x[val], y[val]), epochs=epochs, batch_size=batch, verbose=0)
model.evaluate(x[val], y[val], verbose=0)
model.save(os.path.join(out, "model.keras"))
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def generate(rows: int, features: int, seed: int = 0) -> Path:
    """A two-class CSV: standard normal features, a label from a noisy linear score (made once)."""
    path = DATA / f"training-{rows}x{features}-seed{seed}.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    label = (x @ rng.normal(size=features) + rng.normal(size=rows) > 0).astype(np.int64)
    table = pa.table({**{f"f{j}": x[:, j] for j in range(features)}, "label": label})
    pa_csv.write_csv(table, path.with_suffix(".tmp"), pa_csv.WriteOptions(quoting_style="none"))
    path.with_suffix(".tmp").rename(path)
    return path


def run(quick: bool) -> list[Figure]:
    """Fit in-process and as a job, alternately; compare the faster of each."""
    rows, features, epochs, batch = (2_000, 10, 1, 32) if quick else (40_000, 29, 5, 32)
    rounds = 1 if quick else ROUNDS
    with running_stack() as stack:
        raw = upload(stack.url, generate(rows, features))[1]["id"]
        processed = run_job(stack.url, {"type": "preprocess", "params": {"dataset": raw, "label": "label"}})
        dataset = processed["result"]["dataset"]
        parquet = stack.store / "tenants" / "default" / "datasets" / dataset / "data.parquet"

        def job(name: str, n_epochs: int) -> float:
            record = run_job(stack.url, {"type": "train", "params": {
                "dataset": dataset, "model": {"name": name, "hidden": [64, 32]},
                "epochs": n_epochs, "batch_size": batch, "seed": 0}})
            return running_seconds(record)

        if not quick:
            job("warm", 1)  # a worker that has trained before has TensorFlow imported
        baseline, ours = [], []
        with tempfile.TemporaryDirectory(prefix="bm-bench-keras-") as out:
            for _ in range(rounds):
                text = run_script(BASELINE, str(parquet), out, str(epochs), str(batch), "0").output
                baseline.append(json.loads(text.strip().splitlines()[-1])["seconds"])
                ours.append(job("bench", epochs))
    def seconds(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    note = (f"{rows:,} x {features} rows, {epochs} epochs, batch {batch}; best of {rounds}: "
            f"in-process {seconds(baseline)} s, job {seconds(ours)} s")
    target = None if quick else 1.10  # a smoke run's ratio means nothing
    return [Figure("training.job_vs_keras", "s", min(ours), baseline=min(baseline), target=target,
                   goal="at_most", note=note)]
