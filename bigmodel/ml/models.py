"""Keras models: the 'core' network on normalised features, its serving wrapper, save and load."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bigmodel.errors import DataError, InvalidRequest
from bigmodel.ml import backend
from bigmodel.ml.backend import Forward

TASKS = ("binary", "multiclass", "regression")
NORMALIZERS = ("standard", "minmax", "l2", "none")
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
CHUNK_ROWS = 4096

_OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adamw": keras.optimizers.AdamW,
    "adagrad": keras.optimizers.Adagrad,
}


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer by (case-insensitive) name."""
    key = str(name).lower()
    if key not in _OPTIMIZERS:
        raise InvalidRequest(f"unknown optimizer {name!r}; expected one of {sorted(_OPTIMIZERS)}")
    # bool is an int subclass: reject it explicitly so `True` is not a learning rate of 1.0.
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float):
        raise InvalidRequest(f"learning_rate must be a number, got {learning_rate!r}")
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise InvalidRequest(f"learning_rate must be positive and finite, got {learning_rate!r}")
    return _OPTIMIZERS[key](learning_rate=float(learning_rate))


def _check_spec(spec: dict[str, Any]) -> tuple[str, list[int], str, float]:
    """Validate a model spec; return (task, hidden, activation, dropout)."""
    task = spec.get("task")
    if task not in TASKS:
        raise InvalidRequest(f"unknown task {task!r}; expected one of {list(TASKS)}")
    hidden = spec.get("hidden", [])
    if not isinstance(hidden, list | tuple) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden
    ):
        raise InvalidRequest(f"hidden must be a list of positive integers, got {hidden!r}")
    activation = spec.get("activation", "relu")
    # Only names: a callable would not survive JSON specs or safe_mode loading anyway.
    if not isinstance(activation, str):
        raise InvalidRequest(f"activation must be a name, got {activation!r}")
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"unknown activation {activation!r}") from exc
    dropout = spec.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise InvalidRequest(f"dropout must be a number in [0, 1), got {dropout!r}")
    return task, [int(h) for h in hidden], activation, float(dropout)


def build_model(
    spec: dict[str, Any],
    n_features: int,
    n_classes: int | None,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    seed: int = 0,
    *,
    target: tuple[float, float] | None = None,
) -> keras.Model:
    """The 'core' model on normalised features: Dense stack from spec, output+loss from the task, compiled.

    target=(mean, std) of a regression label: the network learns the standardised target and a fixed
    last layer restores its units, so a label in the hundreds trains as easily as one near zero while
    predictions, losses and metrics stay in the label's own units.
    """
    task, hidden, activation, dropout = _check_spec(spec)
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise InvalidRequest(f"n_features must be a positive integer, got {n_features!r}")
    if task == "multiclass" and (not isinstance(n_classes, int) or n_classes < 2):
        raise InvalidRequest(f"a multiclass model needs n_classes >= 2, got {n_classes!r}")
    opt = make_optimizer(optimizer, learning_rate)

    # Seeds weight initialisers and dropout masks, which Keras draws from the global seed.
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation=activation, name=f"dense_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)

    # The output stays float32 under mixed precision: float16 softmax/sigmoid/MSE lose too much.
    if task == "binary":
        outputs = keras.layers.Dense(1, activation="sigmoid", name="output", dtype="float32")(x)
        loss, metrics = "binary_crossentropy", ["accuracy"]
    elif task == "multiclass":
        outputs = keras.layers.Dense(n_classes, activation="softmax", name="output", dtype="float32")(x)
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    else:
        outputs = keras.layers.Dense(1, name="output", dtype="float32")(x)
        if target is not None:
            mean, std = _target_scale(target)
            outputs = keras.layers.Rescaling(scale=std, offset=mean, name="target_units")(outputs)
        loss, metrics = "mse", ["mae"]

    model = keras.Model(inputs, outputs, name="core")
    model.compile(optimizer=opt, loss=loss, metrics=metrics)
    return model


def target_stats(y: np.ndarray) -> tuple[float, float]:
    """(mean, std) of regression targets, for build_model's target; a constant target gets std 1."""
    values = np.asarray(y, dtype=np.float64)
    std = float(values.std()) if len(values) else 1.0
    return (float(values.mean()) if len(values) else 0.0), (std if np.isfinite(std) and std > 0 else 1.0)


def _target_scale(target: Any) -> tuple[float, float]:
    """A checked (mean, std) pair."""
    try:
        mean, std = (float(v) for v in target)
    except (TypeError, ValueError):
        raise InvalidRequest(f"target must be (mean, std), got {target!r}") from None
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise InvalidRequest(f"target mean and std must be finite with std > 0, got {target!r}")
    return mean, std


def _normalizer(transform: dict[str, Any], n_features: int) -> keras.layers.Layer | None:
    """The Keras layer that reproduces the transform's normalisation, or None for 'none'."""
    mode = transform.get("normalize", "none")
    if mode not in NORMALIZERS:
        raise DataError(f"unknown normalisation {mode!r}; expected one of {list(NORMALIZERS)}")
    if mode == "none":
        return None
    if mode == "l2":
        # x / max(||x||, 1e-12): an all-zero row stays zero, as in preprocessing.
        return keras.layers.UnitNormalization(axis=-1, name="normalize")
    offset = transform.get("offset")
    scale = transform.get("scale")
    if offset is None or scale is None or len(offset) != n_features or len(scale) != n_features:
        raise DataError(f"'{mode}' normalisation needs offset and scale of length {n_features}")
    off = np.asarray(offset, dtype=np.float64)
    sc = np.asarray(scale, dtype=np.float64)
    # Normalization divides by max(sqrt(variance), 1e-7); a zero scale would silently diverge
    # from preprocessing, so refuse it rather than serve different numbers.
    if not (np.all(np.isfinite(off)) and np.all(np.isfinite(sc)) and np.all(sc > 1e-7)):
        raise DataError("normalisation offset/scale must be finite with every scale > 1e-7")
    # Plain lists keep the layer config JSON-serialisable inside model.keras.
    return keras.layers.Normalization(
        axis=-1, mean=off.tolist(), variance=(sc**2).tolist(), name="normalize"
    )


def serving_model(core: keras.Model, transform: dict[str, Any]) -> keras.Model:
    """Wrap the core with the fitted normalisation: the whole model takes encoded (raw) features."""
    n_features = int(core.input_shape[-1])
    features = transform.get("features")
    if features is not None and len(features) != n_features:
        raise DataError(
            f"the transform has {len(features)} features but the model expects {n_features}"
        )
    if core.name != "core":
        # get_layer("core") is how a loaded serving model gives its core back.
        raise InvalidRequest(f"the core model must be named 'core', got {core.name!r}")
    inputs = keras.Input(shape=(n_features,), name="encoded")
    norm = _normalizer(transform, n_features)
    x = norm(inputs) if norm is not None else inputs
    outputs = core(x)
    return keras.Model(inputs, outputs, name="serving")


@dataclass(frozen=True)
class Saved:
    """What save_model wrote: its files, and what the version's meta says of the backend and the export."""

    files: list[Path]
    meta: dict[str, Any]  # keras_backend, and saved_model: {"exported": true} or why not


def save_model(model: keras.Model, directory: str | Path) -> Saved:
    """Write model.keras and a TF SavedModel (saved_model/) into a local directory.

    The .keras file serves on any backend. The SavedModel needs TensorFlow: Keras exports it from
    TensorFlow and (with TensorFlow installed) JAX; where it cannot, the version's meta says why.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    keras_file = out / MODEL_FILE
    model.save(keras_file)
    export_dir = out / SAVED_MODEL_DIR
    meta: dict[str, Any] = {"keras_backend": backend.name(), "saved_model": {"exported": True}}
    try:
        model.export(str(export_dir), format="tf_saved_model", verbose=False)
    except Exception as exc:
        if backend.name() == "tensorflow":
            raise  # a broken export on TensorFlow is a real error: it must not pass as a saved model
        shutil.rmtree(export_dir, ignore_errors=True)  # no half-written SavedModel next to the .keras file
        reason = (str(exc).strip().splitlines() or [""])[0][:300]  # the gist, not a stack of frames
        meta["saved_model"] = {"exported": False, "reason": f"Keras on {backend.name()} could not export a "
                               f"TF SavedModel ({type(exc).__name__}: {reason}); model.keras serves it"}
    written = [keras_file]
    written.extend(sorted(p for p in export_dir.rglob("*") if p.is_file()))
    return Saved(written, meta)


def load_model(path: str | Path) -> keras.Model:
    """Load a .keras file with safe_mode=True."""
    p = Path(path)
    if p.is_dir():
        # Accept the directory save_model wrote, so callers need not know the file name.
        p = p / MODEL_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no model file at {p}")
    return keras.saving.load_model(p, safe_mode=True)


def run_batched(fn: Forward, x: np.ndarray, n_outputs: int, chunk: int = CHUNK_ROWS) -> np.ndarray:
    """Apply a backend.forward function chunk by chunk (bounding memory) and stack the outputs."""
    parts = [fn(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    if not parts:
        return np.zeros((0, n_outputs), dtype=np.float32)
    return np.concatenate(parts, axis=0)
