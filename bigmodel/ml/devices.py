"""Where training runs: the distribution strategy and the float precision, chosen in one place.

A worker process sees the GPUs its pool pinned with CUDA_VISIBLE_DEVICES: none (CPU), one, or several
(`--gpus-per-process N`), in which case the model trains data-parallel where Keras offers it on the
process's backend: MirroredStrategy on TensorFlow, keras.distribution.DataParallel on JAX; Keras has none
for PyTorch, so a torch process trains on its first GPU and says so in the job's log. Mixed precision
(float16 compute, float32 weights; a Keras dtype policy, the same on every backend) is on where every
visible GPU has compute capability 7.0 or more (Volta and later, which have tensor cores); older GPUs and
CPUs keep float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

MIXED_MIN_CAPABILITY = (7, 0)
# The data-parallel strategy Keras offers per backend (bigmodel.ml.backend.distribute builds it).
MULTI_GPU = {"tensorflow": "mirrored", "jax": "data-parallel"}


@dataclass(frozen=True)
class Placement:
    """How one training runs: strategy ('default', 'mirrored', 'data-parallel'), devices, dtype policy."""

    strategy: str
    devices: tuple[str, ...]
    precision: str  # a Keras dtype policy name: "float32" or "mixed_float16"
    backend: str = "tensorflow"
    note: str = ""  # what the job's log should also say (GPUs left idle)

    def describe(self) -> str:
        """One line for the job's log."""
        where = ", ".join(self.devices) if self.devices else "the CPU"
        line = f"training on {where} ({self.strategy} strategy, {self.precision}, Keras on {self.backend})"
        return f"{line}; {self.note}" if self.note else line


def choose(gpus: Sequence[tuple[str, tuple[int, int] | None]], mixed_precision: str = "auto",
           backend: str = "tensorflow") -> Placement:
    """The placement for these GPUs (name, compute capability); no GPUs means the CPU in float32."""
    names = tuple(name for name, _ in gpus)
    capable = bool(gpus) and all(cc is not None and cc >= MIXED_MIN_CAPABILITY for _, cc in gpus)
    precision = "mixed_float16" if mixed_precision == "auto" and capable else "float32"
    if len(names) <= 1:
        return Placement("default", names, precision, backend)
    if backend not in MULTI_GPU:
        idle = ", ".join(names[1:])
        return Placement("default", names[:1], precision, backend,
                         note=f"Keras has no data-parallel training on {backend}: {idle} idle")
    return Placement(MULTI_GPU[backend], names, precision, backend)


def visible_gpus() -> list[tuple[str, tuple[int, int] | None]]:
    """The GPUs this process may use, as its Keras backend sees them, and their compute capability."""
    from bigmodel.ml import backend

    return backend.gpus()


@contextlib.contextmanager
def training_scope(mixed_precision: str = "auto", placement: Placement | None = None) -> Iterator[Placement]:
    """Build the model inside this block: it enters the strategy's scope and sets the dtype policy.

    Each layer keeps the policy it was built with, so the global policy is restored when the block ends.
    """
    import keras

    from bigmodel.ml import backend

    placement = placement or choose(visible_gpus(), mixed_precision, backend.name())
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(placement.precision)
    try:
        with backend.distribute(placement.strategy, placement.devices):
            yield placement
    finally:
        keras.config.set_dtype_policy(previous)
