"""The Keras backend this process runs on, and the one place that knows each backend's fast paths.

Keras reads KERAS_BACKEND once, when it is first imported, so a worker sets it in its environment at
start (`bigmodel worker --backend jax`) and its children inherit it. The rest of bigmodel speaks Keras 3;
what Keras leaves to the backend lives here, each framework imported only when its branch runs:
  - forward(): compiled inference: a tf.function with a None batch dimension (TensorFlow), jax.jit on
    padded power-of-two batch buckets (JAX), the eager model under torch.no_grad (PyTorch)
  - batches(): training input: tf.data (TensorFlow), an index-gathering PyDataset (the others)
  - gpus() / distribute(): the visible GPUs and the multi-GPU scope (MirroredStrategy, DataParallel)
  - configure_threads(): the thread plan for a runtime already loaded
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from bigmodel.threads import ThreadPlan, configure_tensorflow

Forward = Callable[[np.ndarray], np.ndarray]
Gpu = tuple[str, tuple[int, int] | None]  # (device name, compute capability)

MIN_BUCKET = 16


def name() -> str:
    """The backend Keras runs on in this process."""
    return str(keras.backend.backend())


def bucket(rows: int) -> int:
    """The padded batch size for `rows` rows: the next power of two, at least MIN_BUCKET."""
    return max(MIN_BUCKET, 1 << max(0, rows - 1).bit_length())


def forward(model: keras.Model, n_features: int) -> Forward:
    """The model in inference mode as float32 [rows, n_features] -> numpy outputs, compiled now."""
    build = {"tensorflow": _tf_forward, "jax": _jax_forward, "torch": _torch_forward}[name()]
    return build(model, n_features)


def _tf_forward(model: keras.Model, n_features: int) -> Forward:
    import tensorflow as tf

    # One signature with a None batch dimension: traced once, whatever the batch size; the concrete
    # function skips tf.function's per-call signature matching (0.13 vs 0.23 ms a row).
    fn = tf.function(lambda x: model(x, training=False),
                     input_signature=[tf.TensorSpec([None, n_features], tf.float32)]).get_concrete_function()
    return lambda x: np.asarray(fn(tf.constant(x)))


def _jax_forward(model: keras.Model, n_features: int) -> Forward:
    import jax

    compiled = jax.jit(lambda trainable, non_trainable, x: model.stateless_call(
        trainable, non_trainable, x, training=False)[0])
    # The weights as they are now, passed as arguments rather than baked into the program as constants.
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def run(x: np.ndarray) -> np.ndarray:
        rows = len(x)
        size = bucket(rows)
        if size > rows:  # XLA compiles per shape: a program per bucket, never one per batch size
            x = np.concatenate([x, np.zeros((size - rows, x.shape[1]), dtype=x.dtype)])
        return np.asarray(compiled(trainable, non_trainable, x))[:rows]

    run(np.zeros((1, n_features), dtype=np.float32))  # the smallest bucket compiles now, not on a request
    return run


def _torch_forward(model: keras.Model, n_features: int) -> Forward:
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = model(keras.ops.convert_to_tensor(x), training=False)
        return np.asarray(keras.ops.convert_to_numpy(out))

    return run


class IndexBatches(keras.utils.PyDataset):
    """Batches gathered by row index from in-memory arrays: in order, or in a new seeded order each epoch."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None) -> None:
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed) if seed is not None else None
        self.order = self._shuffled()

    def _shuffled(self) -> np.ndarray | None:
        return self.rng.permutation(len(self.x)) if self.rng is not None else None

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start = index * self.batch_size
        rows: Any = slice(start, start + self.batch_size)  # in order: views, no copy
        if self.order is not None:
            rows = self.order[rows]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self) -> None:
        self.order = self._shuffled()


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None) -> Any:
    """Training input: every row once per epoch, reshuffled each epoch from `seed` (in order when None).

    Shuffling moves indices, never rows: no per-row elements, no copy of the data set.
    """
    if name() != "tensorflow":
        return IndexBatches(x, y, batch_size, seed)
    import tensorflow as tf

    features, labels = tf.constant(x), tf.constant(y)
    order = tf.data.Dataset.range(len(x))
    if seed is not None:
        order = order.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    gathered = order.batch(batch_size).map(lambda i: (tf.gather(features, i), tf.gather(labels, i)))
    return gathered.prefetch(tf.data.AUTOTUNE)


def _capability(value: Any) -> tuple[int, int] | None:
    """A compute capability as (major, minor) from '8.0' or a pair; None when unknown."""
    try:
        major, minor = (str(value).split(".") if isinstance(value, str) else value)[:2]
        return int(major), int(minor)
    except (TypeError, ValueError):
        return None


def gpus() -> list[Gpu]:
    """The GPUs this process may use, with their compute capability (TensorFlow: memory growth on)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        out = []
        for gpu in tf.config.list_physical_devices("GPU"):
            with contextlib.suppress(RuntimeError):  # already initialised: growth was set by then (env)
                tf.config.experimental.set_memory_growth(gpu, True)
            details = tf.config.experimental.get_device_details(gpu)
            capability = _capability(details.get("compute_capability"))
            out.append((gpu.name.replace("physical_device:", ""), capability))
        return out
    if backend == "jax":
        import jax

        try:
            devices = jax.devices("gpu")
        except RuntimeError:  # no GPU platform in this jaxlib, or no device
            return []
        # Named as keras.distribution.list_devices names them: DataParallel takes these names as they are.
        return [(f"{d.platform}:{d.id}", _capability(getattr(d, "compute_capability", None)))
                for d in devices]
    import torch

    return [(f"cuda:{i}", _capability(torch.cuda.get_device_capability(i)))
            for i in range(torch.cuda.device_count())]


@contextlib.contextmanager
def distribute(strategy: str, devices: tuple[str, ...]) -> Iterator[None]:
    """Build the model inside: it enters the multi-device scope `strategy` names ('default': none)."""
    if name() == "tensorflow":
        import tensorflow as tf

        scope = (tf.distribute.MirroredStrategy(devices=list(devices)) if strategy == "mirrored"
                 else tf.distribute.get_strategy())
        with scope.scope():  # the model keeps the strategy it was built under for its fit()
            yield
        return
    if strategy == "data-parallel":
        # Keras's JAX trainer shards batches and lays out optimizer variables by the distribution set when
        # fit() runs, not when the model was built, so it is set for the process and left set: a worker
        # process keeps the same GPUs all its life, so every job would set the same one.
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=list(devices)))
    yield


def configure_threads(plan: ThreadPlan) -> None:
    """Tell an already loaded runtime the thread plan (the environment tells whatever loads later).

    Only TensorFlow needs telling: torch reads OMP_NUM_THREADS when it loads, and XLA's CPU client has no
    per-process thread setting.
    """
    if name() == "tensorflow":
        configure_tensorflow(plan)
