"""Fitting a core model on backend.batches, with per-epoch progress, cancel checkpoints and early stopping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from bigmodel.errors import InvalidRequest
from bigmodel.ml import backend

EpochCallback = Callable[[int, int, dict[str, float]], None]
BatchCallback = Callable[[], None]

ON_BATCH_EVERY = 50
_EARLY_STOPPING_KEYS = {"monitor", "patience", "mode", "min_delta"}


@dataclass(frozen=True)
class TrainResult:
    """What fitting produced."""

    core: keras.Model
    history: dict[str, list[float]]  # plain floats, JSON-able: loss, accuracy, val_loss, ...
    epochs_run: int  # epochs completed by this call (not counting initial_epoch)


def plain_logs(logs: dict[str, Any] | None) -> dict[str, float]:
    """Keras logs as plain Python floats (they may hold numpy scalars or tensors)."""
    out: dict[str, float] = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue  # non-scalar entries are not progress metrics
    return out


class _Reporter(keras.callbacks.Callback):
    """Calls the job's hooks from inside Keras and remembers the first error they raised."""

    def __init__(
        self,
        epochs: int,
        on_epoch: EpochCallback | None,
        on_batch: BatchCallback | None,
        every: int,
    ) -> None:
        super().__init__()
        self.epochs = epochs
        self.on_epoch = on_epoch
        self.on_batch = on_batch
        self.every = every
        self.error: BaseException | None = None

    def _call(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except BaseException as exc:
            # Kept so fit() can re-raise the original even if a Keras version wraps it.
            self.error = exc
            self.model.stop_training = True
            raise

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.on_batch is not None and (batch + 1) % self.every == 0:
            self._call(self.on_batch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.on_epoch is not None:
            # Keras counts epochs from 0 (absolute, including initial_epoch); jobs show 1-based.
            self._call(self.on_epoch, epoch + 1, self.epochs, plain_logs(logs))


def _early_stopping(config: dict[str, Any], has_validation: bool) -> keras.callbacks.EarlyStopping:
    """An EarlyStopping callback (restoring the best weights) from a JSON config."""
    unknown = set(config) - _EARLY_STOPPING_KEYS
    if unknown:
        raise InvalidRequest(f"unknown early_stopping keys: {sorted(unknown)}")
    monitor = str(config.get("monitor", "val_loss"))
    if not has_validation and monitor.startswith("val_"):
        # No validation split: watching the training metric beats silently never stopping.
        monitor = monitor[len("val_") :]
    patience = config.get("patience", 3)
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise InvalidRequest(f"early_stopping.patience must be an integer >= 0, got {patience!r}")
    mode = config.get("mode", "auto")
    if mode not in ("auto", "min", "max"):
        raise InvalidRequest(f"early_stopping.mode must be auto, min or max, got {mode!r}")
    min_delta = config.get("min_delta", 0.0)
    if isinstance(min_delta, bool) or not isinstance(min_delta, int | float) or min_delta < 0:
        raise InvalidRequest(f"early_stopping.min_delta must be >= 0, got {min_delta!r}")
    return keras.callbacks.EarlyStopping(
        monitor=monitor,
        patience=patience,
        mode=mode,
        min_delta=float(min_delta),
        restore_best_weights=True,
    )


def _arrays(pair: tuple[np.ndarray, np.ndarray], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Features as float32 2-D and labels as int32 (class indices) or float32."""
    x = np.asarray(pair[0], dtype=np.float32)
    y = np.asarray(pair[1])
    if x.ndim != 2 or len(x) == 0:
        raise InvalidRequest(f"{what} features must be a non-empty 2-D array, got shape {x.shape}")
    if len(y) != len(x):
        raise InvalidRequest(f"{what} has {len(x)} feature rows but {len(y)} labels")
    y = y.astype(np.int32) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32)
    return x, y


def fit(
    core: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    early_stopping: dict[str, Any] | None = None,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
    on_batch_every: int = ON_BATCH_EVERY,
    initial_epoch: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Fit on backend.batches (shuffled with seed, batched), reporting each epoch through on_epoch.

    `initial_epoch` resumes a run whose weights were restored from a checkpoint; `callbacks` run
    before the reporting hooks at each epoch's end.
    """
    for name, value, low in (
        ("epochs", epochs, 1),
        ("batch_size", batch_size, 1),
        ("on_batch_every", on_batch_every, 1),
        ("initial_epoch", initial_epoch, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidRequest(f"{name} must be an integer >= {low}, got {value!r}")
    if initial_epoch >= epochs:
        raise InvalidRequest(f"initial_epoch ({initial_epoch}) must be below epochs ({epochs})")
    if not getattr(core, "compiled", False):
        raise InvalidRequest("the model must be compiled before fitting (use build_model)")

    x, y = _arrays(train, "train")
    # Before building the dataset: tf.data combines the global seed with the shuffle's own seed.
    # It also seeds dropout masks and anything else drawn from Keras/TF/numpy generators.
    keras.utils.set_random_seed(seed)
    train_ds = backend.batches(x, y, batch_size, seed)
    val_ds = None
    if validation is not None:
        vx, vy = _arrays(validation, "validation")
        val_ds = backend.batches(vx, vy, batch_size, None)  # order does not change validation metrics

    reporter = _Reporter(epochs, on_epoch, on_batch, on_batch_every)
    # Caller's callbacks (a checkpoint) first: an epoch is saved before the job's hooks may stop it.
    callbacks = [*(callbacks or []), reporter]
    if early_stopping is not None:
        callbacks.append(_early_stopping(early_stopping, val_ds is not None))

    try:
        history = core.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            shuffle=False,  # the dataset is already shuffled with our seed
            verbose=0,
        )
    except BaseException as exc:
        # A hook's exception (e.g. JobCancelled) must reach the caller as itself, not wrapped.
        if reporter.error is not None and exc is not reporter.error:
            raise reporter.error from exc
        raise
    hist = {key: [float(v) for v in values] for key, values in history.history.items()}
    epochs_run = len(hist.get("loss", []))
    return TrainResult(core=core, history=hist, epochs_run=epochs_run)
