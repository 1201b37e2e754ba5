"""Worker start-up and shutdown hooks: heartbeats and the reaper, delivery marks, and hand-over on stop."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from celery.signals import (
    task_received,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)
from celery.worker import state as worker_state

from bigmodel.jobs.reaper import Reaper
from workers.celery_app import RUN_JOB
from workers.resources import Handles, handles, opened

log = logging.getLogger(__name__)
_stop = threading.Event()
_main: dict[str, Any] = {}  # the main process's app and node name, set when the worker is ready


def _info(app: Any) -> dict[str, Any]:
    conf = app.conf
    return {"pool": conf.get("bigmodel_pool", "cpu"), "queues": list(conf.get("bigmodel_worker_queues", [])),
            "concurrency": conf.get("bigmodel_concurrency", 1), "host": socket.gethostname(),
            "pid": os.getpid(), "gpus": conf.get("bigmodel_gpus", []),
            "backend": conf.bigmodel_settings.keras_backend}


@worker_ready.connect
def _start_housekeeping(sender: Any = None, **_: Any) -> None:
    app, hostname = sender.app, sender.hostname
    _main.update(app=app, hostname=hostname)
    h = handles(app)
    reaper = Reaper(h.jobs, h.settings.max_attempts)
    info = _info(app)
    beat_every = h.settings.worker_heartbeat_seconds
    tick = min(reaper.period, beat_every)

    def housekeeping() -> None:
        next_beat = 0.0
        while not _stop.is_set():
            if time.monotonic() >= next_beat:
                try:
                    h.presence.beat(hostname, info, ttl=beat_every * 3)
                    next_beat = time.monotonic() + beat_every
                except Exception:  # Redis down: the worker keeps going and beats again when it is back
                    log.warning("heartbeat to Redis failed")
            reaper.run_safely()
            _stop.wait(tick)

    threading.Thread(target=housekeeping, name="bigmodel-housekeeping", daemon=True).start()
    log.info("worker %s ready: pool=%s queues=%s", hostname, info["pool"], info["queues"])


@task_received.connect
def _mark_delivered(request: Any = None, **_: Any) -> None:
    # In the main process, before the job reaches a pool process: if this worker dies before the job
    # is claimed, the reaper sees the mark lapse and publishes the job again.
    if request is None or request.name != RUN_JOB or "app" not in _main:
        return
    try:
        handles(_main["app"]).jobs.delivered(request.id, _main["hostname"])
    except Exception:  # Redis down: the claim will tell; worst case Celery redelivers after its timeout
        log.warning("could not mark job %s delivered", request.id)


@worker_shutting_down.connect
def _start_hand_over(sender: Any = None, **_: Any) -> None:
    # Called from the signal handler: do the work in a thread; it is not a daemon, so the process
    # waits for it (bounded by handover_seconds) before it exits.
    _stop.set()
    if "app" in _main:
        threading.Thread(target=_hand_over, args=(handles(_main["app"]), str(sender)),
                         name="bigmodel-hand-over").start()


def _hand_over(h: Handles, hostname: str) -> None:
    """Ask running jobs to come back at their next checkpoint; past the grace time, take them back."""
    try:
        asked = h.jobs.request_handover([r.id for r in list(worker_state.active_requests)], f"{hostname}#")
        if asked:
            log.warning("stopping: handing %d running job(s) back to their queues", asked)
        deadline = time.monotonic() + h.settings.handover_seconds
        while worker_state.active_requests and time.monotonic() < deadline:
            time.sleep(0.1)
        for request in list(worker_state.active_requests):
            pid = getattr(request, "worker_pid", None)
            if not pid:
                continue
            # The job did not reach a checkpoint in time: stop its process first (a stopped process
            # writes nothing), then give the job back.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
            reason = (f"worker {hostname} stopped; the job did not reach a checkpoint within "
                      f"{h.settings.handover_seconds} s")
            h.jobs.hand_back(request.id, None, reason, worker=f"{hostname}#{pid}")
    except Exception:
        log.exception("hand-over on shutdown failed; the reaper recovers the jobs when their leases lapse")
    finally:
        with contextlib.suppress(Exception):
            h.presence.leave(hostname)


@worker_process_init.connect
def _child_init(**_: Any) -> None:
    # TF is imported lazily by runners in the child; quiet its C++ logs and grow GPU memory on demand.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


@worker_process_shutdown.connect
def _child_exit(**_: Any) -> None:
    # A pool process that ends (recycled, or its worker stopping) writes the final records it still
    # holds; what it cannot write in time the reaper writes from the persist set.
    h = opened()
    if h is not None and h.jobs.persister is not None:
        h.jobs.persister.drain(timeout=5.0)
