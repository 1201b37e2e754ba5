"""Worker start-up and shutdown hooks: heartbeats for /readyz and routing, TF settings for children."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutting_down

from workers.resources import connect

log = logging.getLogger(__name__)
_stop = threading.Event()


def _info(app: Any, hostname: str) -> dict[str, Any]:
    conf = app.conf
    return {"pool": conf.get("bigmodel_pool", "cpu"), "queues": list(conf.get("bigmodel_worker_queues", [])),
            "concurrency": conf.get("bigmodel_concurrency", 1), "host": socket.gethostname(),
            "pid": os.getpid(), "gpus": conf.get("bigmodel_gpus", []),
            "backend": conf.bigmodel_settings.keras_backend}


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    app, hostname = sender.app, sender.hostname
    settings = app.conf.bigmodel_settings
    presence = connect(settings).presence
    info = _info(app, hostname)
    period = settings.worker_heartbeat_seconds

    def beat() -> None:
        while not _stop.is_set():
            try:
                presence.beat(hostname, info, ttl=period * 3)
            except Exception:  # Redis down: the worker keeps going and beats again when it is back
                log.warning("heartbeat to Redis failed")
            _stop.wait(period)

    threading.Thread(target=beat, name="bigmodel-heartbeat", daemon=True).start()
    log.info("worker %s ready: pool=%s queues=%s", hostname, info["pool"], info["queues"])


@worker_shutting_down.connect
def _stop_heartbeat(sender: Any = None, **_: Any) -> None:
    _stop.set()
    try:
        from workers.app import app

        connect(app.conf.bigmodel_settings).presence.leave(str(sender))
    except Exception:
        log.warning("could not deregister the worker")


@worker_process_init.connect
def _child_init(**_: Any) -> None:
    # TF is imported lazily by runners in the child; quiet its C++ logs and grow GPU memory on demand.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
