"""How many math threads each process may use, so that N processes on C cores do not oversubscribe.

Every pool (cpu, gpu, infer) starts its processes with `ThreadPlan.env()` in their environment:
TensorFlow reads TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS when its runtime starts, and
oneDNN, OpenMP and the BLAS libraries read their own variables when they load. Setting them before
the process imports TensorFlow is the only moment that works, hence environment, not code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The variables each math library reads (oneDNN follows OpenMP's).
_LIBRARY_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class ThreadPlan:
    """Threads for one process: TensorFlow's intra-op pool (and the math libraries) and inter-op pool."""

    intra: int
    inter: int

    def env(self) -> dict[str, str]:
        """The environment that makes a process (and the libraries it loads) use this plan."""
        env = {var: str(self.intra) for var in _LIBRARY_VARS}
        env["TF_NUM_INTRAOP_THREADS"] = str(self.intra)
        env["TF_NUM_INTEROP_THREADS"] = str(self.inter)
        return env


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def plan(processes: int, n_cores: int | None = None, override: int | None = None) -> ThreadPlan:
    """The plan for one of `processes` processes sharing `n_cores` cores (`override` forces intra)."""
    n_cores = n_cores or cores()
    intra = override if override and override > 0 else max(1, n_cores // max(1, processes))
    # Inter-op parallelism only helps graphs with independent branches; a Dense stack has none,
    # and each extra pool is more threads competing for the same cores.
    inter = 1 if intra <= 2 else 2
    return ThreadPlan(intra=intra, inter=inter)


def configure_tensorflow(threads: ThreadPlan) -> None:
    """Tell an already imported TensorFlow the plan too (a no-op once its runtime has started)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads.intra)
        tf.config.threading.set_inter_op_parallelism_threads(threads.inter)
    except RuntimeError:
        pass  # the runtime already started: it took the same numbers from the environment
