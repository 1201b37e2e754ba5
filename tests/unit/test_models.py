"""Keras layer: building, training, metrics, serving round trips and the Predictor (tiny models)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from bigmodel.errors import DataError, InvalidRequest, JobCancelled
from bigmodel.ml.metrics import classification_metrics, evaluate_model, regression_metrics, roc_auc
from bigmodel.ml.models import build_model, load_model, save_model, serving_model
from bigmodel.ml.training import TrainResult, fit
from bigmodel.serving.predictor import Predictor

N_FEATURES = 4
FEATURES = ["age", "color=blue", "color=red", "x"]


def spec(task: str, /, **extra: Any) -> dict[str, Any]:
    """A tiny model spec."""
    base = {"name": "t", "task": task, "hidden": [8], "activation": "relu", "dropout": 0.0}
    return {**base, **extra}


def transform(task: str, normalize: str = "none", **extra: Any) -> dict[str, Any]:
    """A hand-built transform dict as preprocessing would produce it."""
    classes = {"binary": ["no", "yes"], "multiclass": ["a", "b", "c"], "regression": None}[task]
    return {
        "version": 1,
        "label": "y",
        "task": task,
        "label_classes": classes,
        "columns": ["age", "color", "x"],
        "numeric": ["age", "x"],
        "categorical": {"color": ["blue", "red"]},
        "features": FEATURES,
        "impute": {},
        "normalize": normalize,
        "offset": None,
        "scale": None,
        **extra,
    }


def blobs(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k unit-variance Gaussian blobs in N_FEATURES dims whose centres are 6 std apart pairwise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    # Centres at 6/sqrt(2) * e_j: every pair of centres is exactly 6 std apart.
    centres = np.zeros((k, N_FEATURES))
    centres[np.arange(k), np.arange(k)] = 6 / math.sqrt(2)
    x = centres[y] + rng.normal(size=(n, N_FEATURES))
    return x.astype(np.float32), y.astype(np.int64)


def train_split(x: np.ndarray, y: np.ndarray, n_train: int) -> tuple[tuple, tuple]:
    """(train, held-out) pairs."""
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


@pytest.fixture(scope="module")
def binary_run() -> tuple[TrainResult, tuple[np.ndarray, np.ndarray]]:
    """A small binary model trained once on two blobs, with its held-out rows."""
    x, y = blobs(400, 2, seed=1)
    train, held = train_split(x, y, 300)
    core = build_model(spec("binary"), N_FEATURES, None, learning_rate=0.01, seed=0)
    result = fit(core, train, held, epochs=10, batch_size=32, seed=0)
    return result, held


# --- learning ---------------------------------------------------------------------------------


def test_binary_blobs_learn(binary_run: tuple[TrainResult, tuple]) -> None:
    result, (hx, hy) = binary_run
    # Means 6 std apart: the Bayes-optimal boundary errs with probability Phi(-3) ~ 0.13%, so on
    # 100 held-out rows 95% leaves room for 5 errors where about 0.13 are expected.
    metrics = evaluate_model(result.core, "binary", hx, hy, None)
    assert metrics["accuracy"] >= 0.95
    assert metrics["roc_auc"] >= 0.98
    assert result.epochs_run == 10
    assert set(result.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(type(v) is float for values in result.history.values() for v in values)
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_evaluate_model_loss_matches_keras(binary_run: tuple[TrainResult, tuple]) -> None:
    result, (hx, hy) = binary_run
    ours = evaluate_model(result.core, "binary", hx, hy, None, batch_size=16)
    keras_loss = result.core.evaluate(hx, hy.astype(np.float32), verbose=0, return_dict=True)["loss"]
    assert ours["loss"] == pytest.approx(keras_loss, rel=1e-4)
    assert ours["rows"] == len(hx)
    assert ours["rows_per_second"] > 0
    json.dumps(ours)  # plain Python values only


def test_multiclass_blobs_learn() -> None:
    x, y = blobs(400, 3, seed=2)
    train, (hx, hy) = train_split(x, y, 300)
    core = build_model(spec("multiclass"), N_FEATURES, 3, learning_rate=0.01, seed=0)
    result = fit(core, train, None, epochs=15, batch_size=32, seed=0)
    metrics = evaluate_model(result.core, "multiclass", hx, hy, 3)
    # Pairwise 6 std apart: each pairwise boundary errs ~0.13%, so 3 classes err well under 1%.
    assert metrics["accuracy"] >= 0.95
    assert len(metrics["f1_per_class"]) == 3
    assert metrics["f1_macro"] >= 0.9


def test_regression_learns_linear_target() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, N_FEATURES)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5, 1.0]) + 0.1 * rng.normal(size=400)).astype(np.float32)
    train, (hx, hy) = train_split(x, y, 300)
    core = build_model(spec("regression"), N_FEATURES, None, learning_rate=0.02, seed=0)
    result = fit(core, train, None, epochs=20, batch_size=32, seed=0)
    assert set(result.history) == {"loss", "mae"}
    metrics = evaluate_model(result.core, "regression", hx, hy, None)
    # Noise variance 0.01 against signal variance 7.5: a fitted model explains nearly all of it.
    assert metrics["r2"] >= 0.9
    assert metrics["rmse"] == pytest.approx(math.sqrt(metrics["loss"]))


# --- building ---------------------------------------------------------------------------------


def test_build_model_shapes_and_dropout() -> None:
    core = build_model(spec("multiclass", hidden=[8, 4], dropout=0.5), N_FEATURES, 5)
    assert core.name == "core"
    assert core.input_shape == (None, N_FEATURES)
    assert core.output_shape == (None, 5)
    assert [type(layer).__name__ for layer in core.layers[1:]] == [
        "Dense", "Dropout", "Dense", "Dropout", "Dense",
    ]
    assert core.loss == "sparse_categorical_crossentropy"
    no_dropout = build_model(spec("regression", hidden=[3]), N_FEATURES, None, optimizer="sgd")
    assert [type(layer).__name__ for layer in no_dropout.layers[1:]] == ["Dense", "Dense"]
    assert no_dropout.output_shape == (None, 1)
    assert isinstance(no_dropout.optimizer, keras.optimizers.SGD)


@pytest.mark.parametrize(
    ("overrides", "kwargs"),
    [
        ({"hidden": [8, 0]}, {}),
        ({"hidden": [8.5]}, {}),
        ({"activation": "not_an_activation"}, {}),
        ({"dropout": 1.0}, {}),
        ({"dropout": -0.1}, {}),
        ({"task": "ranking"}, {}),
        ({}, {"optimizer": "lbfgs"}),
        ({}, {"learning_rate": 0.0}),
    ],
)
def test_build_model_rejects_bad_specs(overrides: dict, kwargs: dict) -> None:
    with pytest.raises(InvalidRequest):
        build_model(spec("binary", **overrides), N_FEATURES, None, **kwargs)


def test_multiclass_needs_classes() -> None:
    with pytest.raises(InvalidRequest):
        build_model(spec("multiclass"), N_FEATURES, None)


# --- serving round trip -----------------------------------------------------------------------


def normalise(x: np.ndarray, mode: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Reference normalisation in float64, as preprocessing defines it, plus transform fields."""
    x64 = x.astype(np.float64)
    if mode in ("standard", "minmax"):
        if mode == "standard":
            offset, scale = x64.mean(axis=0), x64.std(axis=0)
        else:
            offset, scale = x64.min(axis=0), x64.max(axis=0) - x64.min(axis=0)
        fields = {"offset": offset.tolist(), "scale": scale.tolist()}
        return (x64 - offset) / scale, fields
    if mode == "l2":
        norms = np.linalg.norm(x64, axis=1, keepdims=True)
        return np.divide(x64, norms, out=np.zeros_like(x64), where=norms > 0), {}
    return x64, {}


@pytest.mark.parametrize("mode", ["standard", "minmax", "l2", "none"])
def test_serving_round_trip(mode: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    # Encoded features on very different scales, plus an all-zero row for l2.
    encoded = (rng.normal(size=(50, N_FEATURES)) * [30.0, 1.0, 1.0, 0.01] + [40, 0, 0, 5])
    encoded[0] = 0.0
    encoded = encoded.astype(np.float32)
    normalised, fields = normalise(encoded, mode)
    tr = transform("binary", mode, **fields)

    core = build_model(spec("binary"), N_FEATURES, None, seed=5)
    fit(core, (normalised, (normalised[:, 0] > 0).astype(np.float32)), None, epochs=1, batch_size=16)
    expected = np.asarray(core(normalised.astype(np.float32), training=False))

    saved = save_model(serving_model(core, tr), tmp_path / "model")
    files = saved.files
    assert saved.meta == {"keras_backend": "tensorflow", "saved_model": {"exported": True}}
    assert (tmp_path / "model" / "model.keras") in files
    assert (tmp_path / "model" / "saved_model" / "saved_model.pb").is_file()
    assert all(f.is_file() for f in files)

    loaded = load_model(tmp_path / "model" / "model.keras")  # safe_mode=True inside
    assert loaded.name == "serving"
    assert not any(type(layer).__name__ == "Lambda" for layer in loaded.layers)
    assert loaded.get_layer("core").name == "core"
    got = np.asarray(loaded(encoded, training=False))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(np.isfinite(got))

    predictor = Predictor(loaded, tr)
    np.testing.assert_allclose(predictor.predict_encoded(encoded), expected, atol=1e-5)
    np.testing.assert_allclose(
        predictor.predict_normalized(normalised), expected, atol=1e-5
    )

    # The exported SavedModel serves the same numbers without Keras.
    reloaded = tf.saved_model.load(str(tmp_path / "model" / "saved_model"))
    np.testing.assert_allclose(np.asarray(reloaded.serve(encoded)), expected, atol=1e-5)


def test_serving_model_rejects_bad_transform() -> None:
    core = build_model(spec("binary"), N_FEATURES, None)
    with pytest.raises(DataError):
        serving_model(core, transform("binary", "standard", offset=[0.0] * 4, scale=[1, 1, 0, 1]))
    with pytest.raises(DataError):
        serving_model(core, transform("binary", "standard"))  # offset/scale missing
    with pytest.raises(DataError):
        serving_model(core, transform("binary", features=["a", "b"]))


# --- training hooks ---------------------------------------------------------------------------


def test_on_epoch_cancel_stops_and_propagates() -> None:
    x, y = blobs(64, 2, seed=6)
    core = build_model(spec("binary"), N_FEATURES, None)
    calls: list[tuple[int, int, dict[str, float]]] = []
    cancel = JobCancelled("cancelled by user")

    def on_epoch(epoch: int, total: int, logs: dict[str, float]) -> None:
        calls.append((epoch, total, logs))
        if epoch == 2:
            raise cancel

    with pytest.raises(JobCancelled) as info:
        fit(core, (x, y), (x, y), epochs=6, batch_size=16, on_epoch=on_epoch)
    assert info.value is cancel  # the very object, not a Keras wrapper around it
    assert [(e, t) for e, t, _ in calls] == [(1, 6), (2, 6)]
    assert set(calls[0][2]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(type(v) is float for v in calls[0][2].values())
    # 64 rows / 16 = 4 steps per epoch: training stopped right after epoch 2.
    assert int(core.optimizer.iterations) == 8


def test_on_batch_cancel_stops_mid_epoch() -> None:
    x, y = blobs(64, 2, seed=7)
    core = build_model(spec("binary"), N_FEATURES, None)
    seen = []

    def on_batch() -> None:
        seen.append(int(core.optimizer.iterations))
        if len(seen) == 2:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        fit(core, (x, y), None, epochs=5, batch_size=4, on_batch=on_batch, on_batch_every=3)
    assert seen == [3, 6]
    assert int(core.optimizer.iterations) == 6  # 16 steps per epoch: stopped inside epoch 1


def test_initial_epoch_numbers_epochs_absolutely() -> None:
    x, y = blobs(32, 2, seed=8)
    core = build_model(spec("binary"), N_FEATURES, None)
    epochs: list[int] = []
    result = fit(core, (x, y), None, epochs=4, batch_size=16, initial_epoch=2,
                 on_epoch=lambda e, t, logs: epochs.append(e))
    assert epochs == [3, 4]
    assert result.epochs_run == 2


@pytest.mark.parametrize("with_validation", [True, False])
def test_early_stopping_on_plateau(with_validation: bool) -> None:
    x, y = blobs(64, 2, seed=9)
    # A learning rate of 1e-9 freezes the weights: the loss plateaus from the first epoch.
    core = build_model(spec("binary"), N_FEATURES, None, learning_rate=1e-9)
    result = fit(
        core, (x, y), (x, y) if with_validation else None, epochs=20, batch_size=32,
        early_stopping={"monitor": "val_loss", "patience": 2, "min_delta": 1e-3},
    )
    # Epoch 1 sets the best; epochs 2 and 3 fail to improve by min_delta -> stop after 3.
    # Without validation this only holds if val_loss fell back to loss (else Keras never stops).
    assert result.epochs_run == 3


def test_early_stopping_rejects_unknown_keys() -> None:
    core = build_model(spec("binary"), N_FEATURES, None)
    x, y = blobs(16, 2, seed=10)
    with pytest.raises(InvalidRequest):
        fit(core, (x, y), None, epochs=1, batch_size=8, early_stopping={"patients": 3})


def test_same_seed_same_history() -> None:
    x, y = blobs(96, 2, seed=11)

    def run(seed: int) -> TrainResult:
        core = build_model(spec("binary", dropout=0.3), N_FEATURES, None, seed=seed)
        return fit(core, (x, y), (x, y), epochs=3, batch_size=16, seed=seed)

    first, second, other = run(0), run(0), run(1)
    # Small dense ops on CPU are bitwise deterministic in a single process, so demand equality.
    assert first.history == second.history
    for a, b in zip(first.core.get_weights(), second.core.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert other.history != first.history  # the seed actually matters


# --- metrics ----------------------------------------------------------------------------------


def test_binary_metrics_by_hand() -> None:
    y = np.array([0, 1, 0, 1])
    p = np.array([0.5, 0.5, 0.2, 0.9])
    m = classification_metrics("binary", y, p, 2)
    # Predicted [1, 1, 0, 1]: tp=2, fp=1, fn=0.
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)
    # Pairs (pos, neg): (.5,.5) tie = 0.5, (.5,.2) = 1, (.9,.5) = 1, (.9,.2) = 1 -> 3.5 / 4.
    assert m["roc_auc"] == pytest.approx(0.875)
    assert m["loss"] == pytest.approx(-(2 * math.log(0.5) + math.log(0.8) + math.log(0.9)) / 4)
    assert classification_metrics("binary", y, p.reshape(-1, 1), 2) == m
    json.dumps(m)


def test_roc_auc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, size=200)
    score = np.round(rng.random(200) + 0.3 * y, 1)  # rounding makes many ties
    pos, neg = score[y == 1], score[y == 0]
    diff = pos[:, None] - neg[None, :]
    expected = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert roc_auc(y, score) == pytest.approx(expected)
    assert roc_auc(np.ones(5), np.linspace(0, 1, 5)) is None


def test_binary_metrics_degenerate_cases_have_no_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics("binary", np.zeros(3), np.array([0.1, 0.2, 0.0]), 2)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["roc_auc"] is None
    assert math.isfinite(m["loss"])  # p = 0 is clipped, not log(0)


def test_multiclass_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 2])
    proba = np.array([
        [0.8, 0.1, 0.1, 0.0],
        [0.3, 0.6, 0.1, 0.0],
        [0.2, 0.7, 0.1, 0.0],
        [0.1, 0.5, 0.4, 0.0],
        [0.2, 0.5, 0.3, 0.0],
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics("multiclass", y, proba, 4)
    # Predicted [0, 1, 1, 1, 1]; class 2 is never predicted and class 3 never appears at all.
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["f1_per_class"] == pytest.approx([2 / 3, 2 / 3, 0.0, 0.0])
    assert m["f1_macro"] == pytest.approx((2 / 3 + 2 / 3) / 4)
    expected_loss = -np.mean(np.log([0.8, 0.3, 0.7, 0.5, 0.3]))
    assert m["loss"] == pytest.approx(expected_loss)
    json.dumps(m)


def test_regression_metrics_by_hand() -> None:
    m = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([[1.0], [2.0], [3.0], [5.0]]))
    assert m == pytest.approx({"loss": 0.25, "mae": 0.25, "rmse": 0.5, "r2": 0.8})
    assert regression_metrics(np.ones(3), np.ones(3))["r2"] == 1.0


def test_metrics_reject_mismatched_lengths() -> None:
    with pytest.raises(DataError):
        classification_metrics("binary", np.array([0, 1]), np.array([0.1, 0.2, 0.3]), 2)
    with pytest.raises(DataError):
        classification_metrics("multiclass", np.array([0, 5]), np.full((2, 3), 1 / 3), 3)
    with pytest.raises(DataError):
        regression_metrics(np.ones(2), np.ones(3))


# --- Predictor --------------------------------------------------------------------------------


def predictor(task: str, n_classes: int | None = None, **tr: Any) -> Predictor:
    """A Predictor around a fresh (untrained) core taking normalised input."""
    core = build_model(spec(task), N_FEATURES, n_classes)
    return Predictor(core, transform(task, **tr), normalized_input=True)


def test_predictor_wrong_feature_count() -> None:
    pred = predictor("binary")
    with pytest.raises(DataError, match=r"expected 4 features \(age, color=blue, color=red, x\), got 3"):
        pred.predict_encoded(np.zeros((2, 3)))
    with pytest.raises(DataError):
        pred.predict_normalized(np.zeros(4))  # one flat row is not a (rows, features) matrix
    with pytest.raises(DataError):
        pred.predict_encoded(np.full((1, 4), np.nan))


def test_predictor_batches_large_inputs() -> None:
    pred = predictor("regression")
    x = np.random.default_rng(13).normal(size=(5000, N_FEATURES)).astype(np.float32)
    out = pred.predict_encoded(x)  # more rows than one 4096-row chunk
    assert out.shape == (5000, 1)
    np.testing.assert_allclose(out, np.asarray(pred.core(x, training=False)), atol=1e-5)
    assert pred.predict_encoded(np.zeros((0, N_FEATURES))).shape == (0, 1)


def test_format_binary() -> None:
    pred = predictor("binary")
    rows = pred.format(np.array([[0.2], [0.5], [0.9]], dtype=np.float32))
    assert rows == [
        {"probability": pytest.approx(0.2), "label": "no"},
        {"probability": 0.5, "label": "yes"},
        {"probability": pytest.approx(0.9), "label": "yes"},
    ]
    assert all(type(r["probability"]) is float for r in rows)
    json.dumps(rows)


def test_format_multiclass_with_and_without_classes() -> None:
    outputs = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32)
    pred = predictor("multiclass", 3)
    rows = pred.format(outputs)
    assert [r["label"] for r in rows] == ["b", "a"]
    assert rows[0]["probabilities"] == pytest.approx([0.1, 0.7, 0.2])
    assert len(pred.predict_encoded(np.zeros((2, N_FEATURES)))[0]) == 3

    anonymous = predictor("multiclass", 3, label_classes=None)
    assert [r["label"] for r in anonymous.format(outputs)] == [1, 0]
    json.dumps(anonymous.format(outputs))


def test_format_regression() -> None:
    pred = predictor("regression")
    assert pred.format(np.array([[1.5], [-2.0]])) == [{"value": 1.5}, {"value": -2.0}]


def test_predictor_rejects_model_without_core() -> None:
    inputs = keras.Input(shape=(N_FEATURES,))
    other = keras.Model(inputs, keras.layers.Dense(1)(inputs), name="other")
    with pytest.raises(InvalidRequest):
        Predictor(other, transform("regression"))
    with pytest.raises(InvalidRequest):
        predictor("multiclass", 3, label_classes=["a", "b"])
