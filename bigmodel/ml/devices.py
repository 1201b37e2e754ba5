"""Where training runs: the distribution strategy and the float precision, chosen in one place.

A worker process sees the GPUs its pool pinned with CUDA_VISIBLE_DEVICES: none (CPU), one, or several
(`--gpus-per-process N`), in which case the model trains under MirroredStrategy. Mixed precision
(float16 compute, float32 weights) is on where every visible GPU has compute capability 7.0 or more
(Volta and later, which have tensor cores); older GPUs and CPUs keep float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

MIXED_MIN_CAPABILITY = (7, 0)


@dataclass(frozen=True)
class Placement:
    """How one training runs: strategy ('default' or 'mirrored'), its devices, and the dtype policy."""

    strategy: str
    devices: tuple[str, ...]
    precision: str  # a Keras dtype policy name: "float32" or "mixed_float16"

    def describe(self) -> str:
        """One line for the job's log."""
        where = ", ".join(self.devices) if self.devices else "the CPU"
        return f"training on {where} ({self.strategy} strategy, {self.precision})"


def choose(gpus: Sequence[tuple[str, tuple[int, int] | None]], mixed_precision: str = "auto") -> Placement:
    """The placement for these GPUs (name, compute capability); no GPUs means the CPU in float32."""
    names = tuple(name for name, _ in gpus)
    capable = bool(gpus) and all(cc is not None and cc >= MIXED_MIN_CAPABILITY for _, cc in gpus)
    precision = "mixed_float16" if mixed_precision == "auto" and capable else "float32"
    return Placement("mirrored" if len(gpus) > 1 else "default", names, precision)


def visible_gpus() -> list[tuple[str, tuple[int, int] | None]]:
    """The GPUs this process may use, with memory growth turned on, and their compute capability."""
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already initialised: growth was set by then (env)
            tf.config.experimental.set_memory_growth(gpu, True)
        details = tf.config.experimental.get_device_details(gpu)
        out.append((gpu.name.replace("physical_device:", ""), details.get("compute_capability")))
    return out


@contextlib.contextmanager
def training_scope(mixed_precision: str = "auto", placement: Placement | None = None) -> Iterator[Placement]:
    """Build the model inside this block: it enters the strategy's scope and sets the dtype policy.

    Keras keeps the strategy a model was built under for its fit(), and each layer keeps the policy it
    was built with, so the global policy is restored when the block ends.
    """
    import keras
    import tensorflow as tf

    placement = placement or choose(visible_gpus(), mixed_precision)
    if placement.strategy == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices=list(placement.devices))
    else:
        strategy = tf.distribute.get_strategy()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(placement.precision)
    try:
        with strategy.scope():
            yield placement
    finally:
        keras.config.set_dtype_policy(previous)
