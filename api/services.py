"""The app's handles on Redis, the store, the job records and the Celery publisher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from flask import current_app, g

from bigmodel.config import Settings
from bigmodel.connections import redis_client
from bigmodel.jobs.presence import Presence
from bigmodel.jobs.queues import Queues
from bigmodel.jobs.records import Jobs
from bigmodel.jobs.waiting import RecentWorkers
from bigmodel.ml.datasets import Datasets
from bigmodel.ml.registry import Registry
from bigmodel.serving.dataplane import DataPlane
from bigmodel.store import Store


@dataclass
class Services:
    """Everything a view needs beyond the request."""

    settings: Settings
    redis: redis.Redis
    store: Store
    jobs: Jobs
    presence: Presence
    celery: Any
    queues: Queues
    recent_workers: RecentWorkers
    dataplane: DataPlane

    def datasets(self, tenant: str) -> Datasets:
        """The tenant's datasets."""
        return Datasets(self.redis, self.store, tenant)

    def registry(self, tenant: str) -> Registry:
        """The tenant's model registry."""
        return Registry(self.redis, self.store, tenant)


def build(settings: Settings, celery: Any = None) -> Services:
    """Connect to Redis and the store; the Celery app is only for publishing."""
    client = redis_client(settings, retry_on_timeout=False)
    store = Store.from_settings(settings)
    from workers.celery_app import job_sender, make_celery

    celery = celery or make_celery(settings)
    jobs = Jobs(client, store, settings=settings, send=job_sender(celery))
    presence = Presence(client)
    return Services(settings, client, store, jobs, presence, celery, Queues(client, jobs.key),
                    RecentWorkers(presence), DataPlane(client, store, settings))


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["bigmodel"]  # type: ignore[no-any-return]


def tenant() -> str:
    """The tenant of the current request."""
    return g.tenant  # type: ignore[no-any-return]
