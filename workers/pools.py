"""Start worker pools: a prefork CPU pool, or one pinned child per GPU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from bigmodel.config import Settings

NO_GPU_EXIT = 2


@dataclass(frozen=True)
class WorkerPlan:
    """One Celery worker process to start: its name, queues, concurrency and extra environment."""

    name: str
    queues: tuple[str, ...]
    concurrency: int
    env: dict[str, str]
    autoscale: str | None = None


def node_name(name: str | None, default: str) -> str:
    """A Celery node name 'name@host'."""
    name = name or default
    return name if "@" in name else f"{name}@{socket.gethostname()}"


def cpu_plan(concurrency: int | None, name: str | None, queues: tuple[str, ...] | None,
             autoscale: str | None = None) -> WorkerPlan:
    """The CPU pool: one prefork worker, a process per core unless told otherwise."""
    return WorkerPlan(node_name(name, "cpu"), queues or ("cpu",), concurrency or (os.cpu_count() or 1),
                      {}, autoscale)


def gpu_plan(devices: tuple[str, ...], name: str | None,
             queues: tuple[str, ...] | None) -> list[WorkerPlan]:
    """The GPU pool: one single-process worker per device, pinned with CUDA_VISIBLE_DEVICES."""
    base = (name or "gpu").split("@")[0]
    return [
        WorkerPlan(node_name(f"{base}{i}", base), queues or ("gpu",), 1,
                   {"CUDA_VISIBLE_DEVICES": dev, "TF_FORCE_GPU_ALLOW_GROWTH": "true",
                    "BIGMODEL_GPU_DEVICE": dev})
        for i, dev in enumerate(devices)
    ]


def detect_gpus(settings: Settings) -> tuple[str, ...]:
    """The GPU ids to use: BIGMODEL_GPUS if set, else what TensorFlow sees (asked in a child process)."""
    if settings.gpus is not None:
        return settings.gpus
    probe = ("import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import tensorflow as tf; "
             "print(len(tf.config.list_physical_devices('GPU')))")
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        count = int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        count = 0
    return tuple(str(i) for i in range(count))


def celery_argv(plan: WorkerPlan, loglevel: str = "INFO") -> list[str]:
    """The `celery worker` arguments for a plan."""
    argv = ["worker", "-n", plan.name, "-Q", ",".join(plan.queues), "-P", "prefork",
            f"--loglevel={loglevel}", "--without-gossip", "--without-mingle", "-O", "fair"]
    argv += [f"--autoscale={plan.autoscale}"] if plan.autoscale else ["-c", str(plan.concurrency)]
    return argv


def run_worker(plan: WorkerPlan, pool: str, settings: Settings, loglevel: str = "INFO") -> None:
    """Run one Celery worker in this process (blocks until it stops)."""
    from workers.celery_app import make_celery

    os.environ.update(plan.env)
    app = make_celery(settings)
    app.conf.update(bigmodel_pool=pool, bigmodel_worker_queues=list(plan.queues),
                    bigmodel_concurrency=plan.concurrency,
                    bigmodel_gpus=[plan.env["CUDA_VISIBLE_DEVICES"]] if "CUDA_VISIBLE_DEVICES" in plan.env
                    else [])
    app.worker_main(argv=celery_argv(plan, loglevel))


def _die_with_parent() -> None:
    # Linux: a child gets SIGTERM if the supervisor dies (even by SIGKILL), so nothing is left behind.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def supervise(commands: list[tuple[list[str], dict[str, str]]], restart: bool = True,
              stop_timeout: float = 30.0, together: bool = False) -> int:
    """Run child processes until SIGINT/SIGTERM, restarting any that die; then stop them in reverse order.

    Each child runs in its own session (setsid), so a terminal's Ctrl-C reaches only this supervisor,
    which stops the children one by one, last started first (pools, then the API, then Redis),
    each given `stop_timeout` seconds (a worker's hand-over) before SIGKILL; `together` stops them
    all at once instead (peers such as one worker per GPU).
    """
    children: list[subprocess.Popen[bytes] | None] = [None] * len(commands)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        for i, (argv, env) in enumerate(commands):
            child = children[i]
            if child is None or (child.poll() is not None and restart):
                children[i] = subprocess.Popen(argv, env={**os.environ, **env}, start_new_session=True,
                                               preexec_fn=_die_with_parent)
        time.sleep(0.5)
    running = [c for c in reversed(children) if c is not None and c.poll() is None]
    for group in ([running] if together else [[c] for c in running]):
        for child in group:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout
        for child in group:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return 0
