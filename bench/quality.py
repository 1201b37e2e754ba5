"""quality: the `pipeline` job's default model against the best possible score and a closed-form baseline.

Two generated problems whose optimum is known by construction:
- regression: y = 150 + 75 * (sqrt(.5) * s + sqrt(.5) * e), s a unit-variance linear signal of 10
  features and e independent noise: y has mean 150 and std 75, and no model can explain more than
  R^2 = 0.5 of it;
- two classes: P(y=1 | x) = sigmoid(b . x) with |b| = 2, so the Bayes accuracy is E[sigmoid(|z|)],
  z ~ N(0, 4), computed here by quadrature.
The job runs with the defaults (Dense 64-32, 10 epochs, batch 32, Adam 1e-3); the baselines are
least squares and logistic regression by Newton's method, fitted on the same processed train split
and scored on the same test split.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from bench.harness import Figure
from bench.support import DATA, run_job, running_stack, upload

FEATURES = 10
NORM = 2.0  # |b| of the logistic problem
NEWTON_STEPS = 8


def bayes_accuracy(norm: float = NORM) -> float:
    """E[sigmoid(|z|)] for z ~ N(0, norm^2): the best accuracy any classifier can reach."""
    z = np.linspace(0.0, 12 * norm, 200_001)
    density = 2 * np.exp(-0.5 * (z / norm) ** 2) / (norm * math.sqrt(2 * math.pi))
    return float(np.trapezoid(density / (1 + np.exp(-z)), z))


def generate(kind: str, rows: int, seed: int = 0) -> Path:
    """The CSV of one problem (made once)."""
    path = DATA / f"quality-{kind}-{rows}x{FEATURES}-seed{seed}.csv"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    w = rng.normal(size=FEATURES)
    if kind == "regression":
        signal = x @ (w / np.linalg.norm(w))
        y: np.ndarray = 150 + 75 * (math.sqrt(0.5) * signal + math.sqrt(0.5) * rng.normal(size=rows))
    else:
        p = 1 / (1 + np.exp(-(x @ (w * NORM / np.linalg.norm(w)))))
        y = (rng.random(rows) < p).astype(np.int64)
    table = pa.table({**{f"x{j}": x[:, j] for j in range(FEATURES)}, "y": y})
    pa_csv.write_csv(table, path.with_suffix(".tmp"), pa_csv.WriteOptions(quoting_style="none"))
    path.with_suffix(".tmp").rename(path)
    return path


def _splits(parquet: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The processed dataset's splits as (features with an intercept column, label)."""
    table = pa_parquet.read_table(parquet)
    split = np.asarray(table.column("__split__").to_pylist())
    names = [n for n in table.column_names if n not in ("y", "__split__")]
    x = np.column_stack([table.column(n).to_numpy() for n in names] + [np.ones(len(split))])
    y = table.column("y").to_numpy().astype(np.float64)
    return {s: (x[split == s], y[split == s]) for s in ("train", "test")}


def least_squares_r2(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """R^2 on test of ordinary least squares fitted on train."""
    (x, y), (xt, yt) = splits["train"], splits["test"]
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    return float(1 - np.sum((yt - xt @ coef) ** 2) / np.sum((yt - yt.mean()) ** 2))


def logistic_accuracy(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """Accuracy on test of logistic regression fitted on train by Newton's method."""
    (x, y), (xt, yt) = splits["train"], splits["test"]
    coef = np.zeros(x.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1 / (1 + np.exp(-(x @ coef)))
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(x.shape[1])
        coef += np.linalg.solve(hessian, x.T @ (y - p))
    return float(np.mean(((xt @ coef) > 0) == (yt == 1)))


def run(quick: bool) -> list[Figure]:
    """Run a default pipeline on each problem and score it against both references."""
    rows = 2_000 if quick else 20_000
    train = {"epochs": 2} if quick else {}
    figures: list[Figure] = []
    with running_stack() as stack:
        for kind, metric in (("regression", "r2"), ("binary", "accuracy")):
            dataset = upload(stack.url, generate(kind, rows))[1]["id"]
            record = run_job(stack.url, {"type": "pipeline", "params": {
                "dataset": dataset, "preprocess": {"label": "y"},
                "train": {"model": {"name": f"quality-{kind}"}, **train}}}, timeout=1800)
            result = record["result"]
            score = float(result["evaluate"]["metrics"][metric])
            processed = result["preprocess"]["dataset"]
            splits = _splits(stack.store / "tenants" / "default" / "datasets" / processed / "data.parquet")
            closed_form = least_squares_r2(splits) if kind == "regression" else logistic_accuracy(splits)
            optimum = 0.5 if kind == "regression" else bayes_accuracy()
            baseline_name = "least squares" if kind == "regression" else "Newton logistic regression"
            size = f"{rows:,} x {FEATURES}, test split {len(splits['test'][1]):,} rows"
            figures += [
                Figure(f"quality.{kind}.{metric}", metric, score, baseline=closed_form,
                       target=None if quick else 0.95,
                       note=f"default pipeline model vs {baseline_name} on the same split; {size}"),
                Figure(f"quality.{kind}.{metric}_of_optimum", metric, score, baseline=optimum,
                       note=f"against the best possible {metric} ({optimum:.4f}), by construction"),
            ]
    return figures
