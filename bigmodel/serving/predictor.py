"""Serving predictions: a loaded model plus its transform, with compiled batch functions."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bigmodel.errors import DataError, InvalidRequest
from bigmodel.ml import backend
from bigmodel.ml.models import MODEL_FILE, TASKS, load_model, run_batched, serving_model
from bigmodel.store import Store

CORE_LAYER = "core"


def _describe(names: Sequence[str], limit: int = 10) -> str:
    """Feature names for an error message, shortened when there are many."""
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f", ... {len(names) - limit} more" if len(names) > limit else "")


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value, so results are JSON-able."""
    return value.item() if isinstance(value, np.generic) else value


class Predictor:
    """A loaded model plus its transform, with compiled serving functions (backend.forward: any batch)."""

    def __init__(
        self, model: keras.Model, transform: dict[str, Any], *, normalized_input: bool = False
    ) -> None:
        self.transform = transform
        self.task: str = transform["task"]
        self.features: list[str] = list(transform["features"])
        self.label_classes: list[Any] | None = transform.get("label_classes")
        self.n_features = len(self.features)
        if normalized_input:
            # Given the core itself: wrap it so encoded rows are normalised exactly as in training.
            self.core = model
            self.serving = serving_model(model, transform)
        else:
            self.serving = model
            try:
                self.core = model.get_layer(CORE_LAYER)
            except ValueError as exc:
                raise InvalidRequest(f"the model has no '{CORE_LAYER}' layer") from exc
        if int(self.serving.input_shape[-1]) != self.n_features:
            raise InvalidRequest(
                f"the model takes {self.serving.input_shape[-1]} features "
                f"but the transform lists {self.n_features}"
            )
        self.n_outputs = int(self.core.output_shape[-1])
        if self.task not in TASKS:
            raise InvalidRequest(f"unknown task {self.task!r} in the transform")
        n_classes = 2 if self.task == "binary" else self.n_outputs
        if (
            self.task != "regression"
            and self.label_classes is not None
            and len(self.label_classes) != n_classes
        ):
            raise InvalidRequest(
                f"the transform has {len(self.label_classes)} label classes, "
                f"the model predicts {n_classes}"
            )
        # Compiled here, on whatever backend this process runs Keras on (a .keras file from any): one
        # program for every batch size on TensorFlow; on JAX one per padded bucket, the smallest now and
        # each larger one once, when a batch first needs it.
        self._serving_fn = backend.forward(self.serving, self.n_features)
        self._core_fn = backend.forward(self.core, self.n_features)
        self.nbytes = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in self.serving.weights)

    @classmethod
    def load(cls, path: str | Path, transform: dict[str, Any]) -> Predictor:
        """A predictor for the serving model stored in a .keras file (or save_model's directory)."""
        return cls(load_model(path), transform)

    @classmethod
    def from_store(cls, store: Store, folder: str, transform: dict[str, Any]) -> Predictor:
        """A predictor for the version whose files are in `folder` of a (tenant's) store."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / MODEL_FILE
            path.write_bytes(store.read_bytes(f"{folder}/{MODEL_FILE}"))
            return cls.load(path, transform)

    def check(self, x: np.ndarray) -> np.ndarray:
        """Input as float32 [rows, n_features], or a DataError naming the expected features."""
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            got = arr.shape[1] if arr.ndim == 2 else f"an array of shape {arr.shape}"
            raise DataError(
                f"expected {self.n_features} features ({_describe(self.features)}), got {got}"
            )
        if not np.all(np.isfinite(arr)):
            # NaN would flow silently into every output; the encoder should have imputed it.
            raise DataError("features contain NaN or infinite values")
        return arr

    def predict_encoded(self, x: np.ndarray) -> np.ndarray:
        """Encoded (un-normalised) features -> raw outputs (probabilities / values), via the serving model."""
        return run_batched(self._serving_fn, self.check(x), self.n_outputs)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Checked encoded rows (float32) -> raw outputs: the online path's one compiled call."""
        return run_batched(self._serving_fn, x, self.n_outputs)

    def predict_normalized(self, x: np.ndarray) -> np.ndarray:
        """Already-normalised features -> raw outputs, via the core."""
        return run_batched(self._core_fn, self.check(x), self.n_outputs)

    def _label(self, index: int) -> Any:
        """The decoded label of a class index (the index itself when classes are unknown)."""
        if self.label_classes is None:
            return index
        return _plain(self.label_classes[index])

    def _decode(self, outputs: np.ndarray) -> tuple[np.ndarray, list[Any]]:
        """(scores, labels): binary -> P(class 1) per row; multiclass -> the probability rows."""
        out = np.asarray(outputs, dtype=np.float64)
        if self.task == "binary":
            p = out.reshape(len(out), -1)[:, -1]  # (n,), (n,1), or (n,2) whose last column is P(1)
            return p, [self._label(int(v >= 0.5)) for v in p]
        if self.task == "multiclass":
            probs = out.reshape(len(out), -1)
            return probs, [self._label(int(i)) for i in np.argmax(probs, axis=1)]
        return out.reshape(-1), []

    def format(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        """One JSON-able entry per row: probability/probabilities and label, or value."""
        scores, labels = self._decode(outputs)
        if self.task == "binary":
            return [{"probability": float(p), "label": lab} for p, lab in zip(scores, labels, strict=True)]
        if self.task == "multiclass":
            return [
                {"probabilities": [float(v) for v in row], "label": lab}
                for row, lab in zip(scores, labels, strict=True)
            ]
        return [{"value": float(v)} for v in scores]
