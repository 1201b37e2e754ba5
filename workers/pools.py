"""Start worker pools: a prefork CPU pool, one pinned child per GPU, or the infer pool's serving processes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

from celery.exceptions import SecurityWarning

from bigmodel import threads as thread_rule
from bigmodel.config import Settings
from bigmodel.errors import ConfigError
from bigmodel.jobs.jobtypes import gpu_queue

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
    """A Celery node name 'name@host', by default unique per process (two pools on a host never share one)."""
    name = name or f"{default}-{os.getpid()}"
    return name if "@" in name else f"{name}@{socket.gethostname()}"


def thread_env(processes: int, threads: int | None = None) -> dict[str, str]:
    """The math-thread environment of one of `processes` processes (see bigmodel.threads).

    BIGMODEL_THREADS carries the share too, so a child that plans for itself alone (a GPU or serving
    child started by its supervisor) arrives at the same numbers.
    """
    plan = thread_rule.plan(processes, override=threads)
    return {**plan.env(), "BIGMODEL_THREADS": str(plan.intra)}


def cpu_plan(concurrency: int | None, name: str | None, queues: tuple[str, ...] | None,
             autoscale: str | None = None, threads: int | None = None) -> WorkerPlan:
    """The CPU pool: one prefork worker, a process per core unless told otherwise."""
    processes = concurrency or (os.cpu_count() or 1)
    most = int(autoscale.split(",")[0]) if autoscale else processes
    return WorkerPlan(node_name(name, "cpu"), queues or ("cpu",), processes,
                      thread_env(most, threads), autoscale)


def gpu_plan(devices: tuple[str, ...], name: str | None, queues: tuple[str, ...] | None,
             per_process: int = 1, threads: int | None = None) -> list[WorkerPlan]:
    """The GPU pool: one single-process worker per `per_process` devices, pinned with CUDA_VISIBLE_DEVICES.

    Each process takes the queue for its device count (`gpu`, `gpu2`...) and is named for its devices
    (gpu0@host, gpu2-3@host); devices left over when the count does not divide make a smaller process
    that serves its own size.
    """
    base = (name or "gpu").split("@")[0]
    groups = [devices[i:i + per_process] for i in range(0, len(devices), per_process)]
    cpu_threads = thread_env(len(groups), threads)
    return [
        WorkerPlan(node_name(f"{base}{'-'.join(group)}", base), queues or (gpu_queue(len(group)),), 1,
                   {"CUDA_VISIBLE_DEVICES": ",".join(group), "BIGMODEL_GPU_DEVICE": ",".join(group),
                    # Grow GPU memory on demand (TF) and do not grab it all up front (JAX).
                    "TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                    **cpu_threads})
        for group in groups
    ]


def infer_plan(concurrency: int | None, name: str | None, threads: int | None = None) -> list[WorkerPlan]:
    """The infer pool: serving processes (not Celery) that take the `infer` list in batches."""
    count = max(1, concurrency or 1)
    base = (name or "infer").split("@")[0]
    env = thread_env(count, threads)
    names = [base] if count == 1 else [f"{base}{i}" for i in range(count)]
    return [WorkerPlan(node_name(n, base), ("infer",), 1, env) for n in names]


def backend_env(backend: str) -> dict[str, str]:
    """The environment that makes a process, and the children it starts, run Keras on `backend`."""
    return {"KERAS_BACKEND": backend, "BIGMODEL_KERAS_BACKEND": backend}


def use_backend(backend: str) -> None:
    """Run Keras on `backend` here and in every child: before anything imports keras (it reads this once)."""
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != backend:
        raise ConfigError(f"keras is already loaded on {keras.backend.backend()}: cannot switch to {backend}")
    os.environ.update(backend_env(backend))


def detect_gpus(settings: Settings) -> tuple[str, ...]:
    """The GPU ids to use: BIGMODEL_GPUS if set, else what the Keras backend sees (asked in a child)."""
    if settings.gpus is not None:
        return settings.gpus
    probe = ("import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; from bigmodel.ml.backend import gpus; "
             "print(len(gpus()))")
    env = {**os.environ, **backend_env(settings.keras_backend)}
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                             env=env)
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
                    bigmodel_gpus=plan.env["CUDA_VISIBLE_DEVICES"].split(",")
                    if "CUDA_VISIBLE_DEVICES" in plan.env else [])
    quiet = loglevel.upper() not in ("DEBUG", "INFO")  # at WARNING and above: only what is wrong
    if quiet:
        warnings.filterwarnings("ignore", category=SecurityWarning)  # running as root, as containers do
    app.worker_main(argv=(["--quiet"] if quiet else []) + celery_argv(plan, loglevel))


def run_serving(plans: list[WorkerPlan], settings: Settings, loglevel: str = "INFO") -> int:
    """Run the infer pool: one serving process in this process, or a supervised child per plan."""
    if len(plans) == 1:
        os.environ.update(plans[0].env)  # before TensorFlow loads: it reads its thread counts once
        logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from bigmodel.serving.server import serve

        serve(settings, plans[0].name)
        return 0
    me = [sys.executable, "-m", "bigmodel.cli", "worker", "--pool", "infer", "--loglevel", loglevel]
    warm = {"BIGMODEL_INFER_WARM": ",".join(settings.infer_warm)} if settings.infer_warm else {}
    return supervise([([*me, "--name", plan.name], {**plan.env, **warm}) for plan in plans])


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
