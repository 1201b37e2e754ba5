"""Evaluation metrics in plain numpy (no sklearn), returned as JSON-able Python values."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from bigmodel.errors import DataError, InvalidRequest
from bigmodel.ml import backend
from bigmodel.ml.models import run_batched

# Same clipping as Keras' cross-entropy losses, so our loss matches what training reported.
EPSILON = 1e-7


def _labels(y_true: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """Class indices as int64, checked against the number of predictions and classes."""
    y = np.asarray(y_true).reshape(-1)
    if len(y) != n:
        raise DataError(f"{len(y)} labels for {n} predictions")
    if n == 0:
        raise DataError("cannot compute metrics on zero rows")
    if not np.all(np.isfinite(y.astype(np.float64))) or np.any(y != np.round(y)):
        raise DataError("class labels must be integer class indices")
    labels = y.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"class labels must lie in [0, {n_classes - 1}]")
    return labels


def _ratio(num: float, den: float) -> float:
    """num/den, or 0.0 when den is 0 (e.g. precision of a class never predicted)."""
    return float(num) / float(den) if den > 0 else 0.0


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve by the Mann-Whitney rank sum, ties counted half; None for one class."""
    y = np.asarray(y_true).reshape(-1).astype(bool)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Average ranks (1-based) of tied scores: group g spans ranks start+1 .. start+count.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def classification_metrics(
    task: str, y_true: np.ndarray, proba: np.ndarray, n_classes: int
) -> dict[str, float | list[float] | None]:
    """Loss, accuracy and per-task scores of predicted probabilities against class indices."""
    p = np.asarray(proba, dtype=np.float64)
    if task == "binary":
        # (n,), (n,1), or (n,2) whose last column is P(class 1).
        p1 = p.reshape(len(p), -1)[:, -1]
        y = _labels(y_true, len(p1), 2)
        pc = np.clip(p1, EPSILON, 1 - EPSILON)
        loss = -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))
        pred = (p1 >= 0.5).astype(np.int64)
        tp = int(np.sum((pred == 1) & (y == 1)))
        fp = int(np.sum((pred == 1) & (y == 0)))
        fn = int(np.sum((pred == 0) & (y == 1)))
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, tp + fn)
        return {
            "loss": float(loss),
            "accuracy": float(np.mean(pred == y)),
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "roc_auc": roc_auc(y, p1),
        }
    if task == "multiclass":
        if p.ndim != 2 or p.shape[1] != n_classes:
            raise DataError(f"expected probabilities of shape (rows, {n_classes}), got {p.shape}")
        y = _labels(y_true, len(p), n_classes)
        # Keras renormalises rows before clipping; doing the same keeps the losses comparable.
        sums = p.sum(axis=1, keepdims=True)
        pn = np.clip(p / np.where(sums > 0, sums, 1.0), EPSILON, 1 - EPSILON)
        loss = -np.mean(np.log(pn[np.arange(len(y)), y]))
        pred = np.argmax(p, axis=1)
        hits = np.bincount(y[pred == y], minlength=n_classes)
        predicted = np.bincount(pred, minlength=n_classes)
        actual = np.bincount(y, minlength=n_classes)
        # F1 = 2tp / (2tp + fp + fn) = 2tp / (predicted + actual); 0.0 when a class is absent
        # from both (rather than NaN and a warning).
        f1 = [_ratio(2 * hits[k], predicted[k] + actual[k]) for k in range(n_classes)]
        return {
            "loss": float(loss),
            "accuracy": float(np.mean(pred == y)),
            "f1_per_class": f1,
            "f1_macro": float(np.mean(f1)),
        }
    raise InvalidRequest(f"classification metrics need task binary or multiclass, got {task!r}")


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE (as loss), MAE, RMSE and R^2 of predictions."""
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if len(y) != len(pred):
        raise DataError(f"{len(y)} targets for {len(pred)} predictions")
    if len(y) == 0:
        raise DataError("cannot compute metrics on zero rows")
    err = pred - y
    mse = float(np.mean(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum(err**2))
    # A constant target has no variance to explain: 1.0 if matched exactly, else 0.0 (as sklearn).
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return {
        "loss": mse,
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(mse)),
        "r2": float(r2),
    }


def evaluate_model(
    core: keras.Model,
    task: str,
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int | None,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Loss and task metrics of a model on normalised features, plus rows and rows_per_second."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidRequest(f"batch_size must be a positive integer, got {batch_size!r}")
    xs = np.asarray(x, dtype=np.float32)
    n_features = int(core.input_shape[-1])
    if xs.ndim != 2 or xs.shape[1] != n_features or len(xs) == 0:
        raise DataError(f"expected a non-empty (rows, {n_features}) array, got shape {xs.shape}")
    n_outputs = int(core.output_shape[-1])
    fn = backend.forward(core, n_features)
    for rows in {min(len(xs), batch_size), len(xs) % batch_size} - {0}:
        fn(xs[:rows])  # compile each batch shape outside the timed region: rows_per_second is inference only
    start = time.perf_counter()
    out = run_batched(fn, xs, n_outputs, chunk=batch_size)
    seconds = time.perf_counter() - start

    result: dict[str, Any]
    if task == "regression":
        result = dict(regression_metrics(y, out))
    elif task == "binary":
        result = classification_metrics(task, y, out, 2)
    elif task == "multiclass":
        if n_classes is None:
            raise InvalidRequest("multiclass evaluation needs n_classes")
        result = classification_metrics(task, y, out, n_classes)
    else:
        raise InvalidRequest(f"unknown task {task!r}")
    result["rows"] = len(xs)
    # perf_counter has ns resolution; the floor only keeps the value finite (JSON has no inf).
    result["rows_per_second"] = float(len(xs) / max(seconds, 1e-9))
    return result
