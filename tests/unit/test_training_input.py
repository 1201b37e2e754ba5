"""Training input without copies (batches gathered by index) and regression targets in their own units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bigmodel.errors import InvalidRequest
from bigmodel.ml.backend import batches
from bigmodel.ml.metrics import evaluate_model
from bigmodel.ml.models import build_model, save_model, serving_model, target_stats
from bigmodel.ml.training import fit
from bigmodel.serving.predictor import Predictor


def epoch_rows(ds: object) -> list[list[float]]:
    return [row for _, y in ds for row in y.numpy().tolist()]  # type: ignore[attr-defined]


def test_batches_cover_every_row_once_reshuffled_each_epoch_and_seeded() -> None:
    x = np.arange(100, dtype=np.float32).reshape(50, 2)
    y = np.arange(50, dtype=np.float32)
    ds = batches(x, y, batch_size=8, seed=3)
    first, second = epoch_rows(ds), epoch_rows(ds)
    assert sorted(first) == sorted(second) == list(range(50))
    assert first != second  # a new order every epoch
    assert first == epoch_rows(batches(x, y, batch_size=8, seed=3))  # the same orders for the same seed
    assert epoch_rows(batches(x, y, batch_size=8, seed=None)) == list(range(50))  # validation: in order
    for features, labels in batches(x, y, batch_size=8, seed=3):
        np.testing.assert_array_equal(features.numpy()[:, 0], labels.numpy() * 2)  # rows stay whole


def linear_target(n: int = 3_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (150 + 75 * (x @ np.array([0.6, -0.5, 0.4, 0.3])) + rng.normal(0, 5, n)).astype(np.float32)


def test_regression_target_in_the_hundreds_learns_and_serves_in_its_units(tmp_path: Path) -> None:
    x, y = linear_target()
    target = target_stats(y)
    assert target == pytest.approx((float(y.mean()), float(y.std())), rel=1e-5)
    core = build_model({"task": "regression", "hidden": []}, 4, None, "adam", 1e-2, 0, target=target)
    fit(core, (x[:2_500], y[:2_500]), None, epochs=5, batch_size=32, seed=0)
    metrics = evaluate_model(core, "regression", x[2_500:], y[2_500:], None)
    assert metrics["r2"] > 0.95 and metrics["rmse"] < 20  # in the label's units, not standardised ones
    transform = {"task": "regression", "features": ["a", "b", "c", "d"], "normalize": "none",
                 "label_classes": None}
    save_model(serving_model(core, transform), tmp_path)
    predictor = Predictor.load(tmp_path, transform)
    served = predictor.predict_encoded(x[2_500:])
    np.testing.assert_allclose(served, core.predict(x[2_500:], verbose=0), rtol=1e-5, atol=1e-3)
    assert abs(float(served.mean()) - float(y[2_500:].mean())) < 10


def test_target_stats_and_bad_targets() -> None:
    assert target_stats(np.full(10, 7.0)) == (7.0, 1.0)  # a constant target keeps a usable scale
    for bad in ((1.0, 0.0), (float("nan"), 1.0), (1.0,), "ab"):
        with pytest.raises(InvalidRequest):
            build_model({"task": "regression"}, 2, None, target=bad)  # type: ignore[arg-type]
