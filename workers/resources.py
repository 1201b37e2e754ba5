"""Per-process handles (Redis, store, jobs), made after fork so that no socket is shared by children."""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def connect(settings: Settings) -> Handles:
    """Open the Redis client and the store for these settings."""
    client = redis_client(settings, timeout=10)
    store = Store.from_settings(settings)
    jobs = Jobs(client, store, job_ttl=settings.job_ttl_seconds, event_limit=settings.event_limit)
    return Handles(settings, client, store, jobs, Presence(client))


_HANDLES: dict[int, Handles] = {}


def handles(settings: Settings) -> Handles:
    """This process's handles (a fresh set in each forked child)."""
    pid = os.getpid()
    if pid not in _HANDLES:
        _HANDLES[pid] = connect(settings)
    return _HANDLES[pid]
