"""Per-process handles (Redis, store, jobs), made after fork so that no socket is shared by children."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import redis

from bigmodel.config import Settings
from bigmodel.connections import redis_client
from bigmodel.jobs.presence import Presence
from bigmodel.jobs.records import Jobs
from bigmodel.store import Store


@dataclass(frozen=True)
class Handles:
    """What a task needs to reach the outside world."""

    settings: Settings
    redis: redis.Redis
    store: Store
    jobs: Jobs
    presence: Presence


def connect(settings: Settings, app: Any = None) -> Handles:
    """Open the Redis client and the store for these settings (publishing through `app` when given)."""
    from workers.celery_app import job_sender

    client = redis_client(settings, timeout=10)
    store = Store.from_settings(settings)
    jobs = Jobs(client, store, settings=settings, send=job_sender(app) if app is not None else None,
                persist_in_background=True)
    return Handles(settings, client, store, jobs, Presence(client))


_HANDLES: dict[int, Handles] = {}


def handles(app: Any) -> Handles:
    """This process's handles for a Celery app (a fresh set in each forked child)."""
    pid = os.getpid()
    if pid not in _HANDLES:
        _HANDLES[pid] = connect(app.conf.bigmodel_settings, app)
    return _HANDLES[pid]


def opened() -> Handles | None:
    """This process's handles if it made them (a process that ran no job has none to close)."""
    return _HANDLES.get(os.getpid())
