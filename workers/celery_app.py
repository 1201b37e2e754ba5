"""The Celery app, built from Settings in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from bigmodel.config import Settings
from bigmodel.connections import celery_tls_options
from bigmodel.jobs.presence import PRIORITY_SEP, PRIORITY_STEPS, QUEUES, priority_to_broker

RUN_JOB = "bigmodel.run_job"


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app on Redis, configured for ML jobs that must never be lost or run twice at once."""
    settings = settings or Settings.from_env()
    app = Celery("bigmodel", broker=settings.redis_url, backend=settings.redis_url)
    transport = {
        # An hour past the longest hard time limit: Redis must not redeliver a running job (celery#5935).
        # Recovery of lost workers is the reaper's (a lease period, not hours); this is only a backstop.
        "visibility_timeout": settings.visibility_timeout,
        "priority_steps": list(PRIORITY_STEPS),
        "sep": PRIORITY_SEP,
        "queue_order_strategy": "priority",
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
    }
    app.conf.update(
        # Pickle from a broker is remote code execution: JSON only.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # A message is acked when its run ends; a pool process that dies puts it back on the queue
        # (the job itself is recovered by the reaper from its lapsed lease; a duplicate message is
        # harmless: the claim script lets one attempt run at a time).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Per job type limits travel with each message (jobtypes.limits); these are the ceilings.
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        # A Redis blip must not cancel running jobs: they keep going and their state script decides.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # The job record is the result; nothing is written to the result backend (bounded Redis).
        task_ignore_result=True,
        result_expires=24 * 3600,
        task_default_queue="cpu",
        task_create_missing_queues=True,
        task_routes={RUN_JOB: {"queue": "cpu"}},
        task_queues=None,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_pool_limit=10,
        imports=("workers.tasks", "workers.lifecycle"),
        worker_max_tasks_per_child=200,
    )
    tls = celery_tls_options(settings)
    if tls:  # rediss://: the broker and the result backend verify the server's certificate
        app.conf.update(broker_use_ssl=tls, redis_backend_use_ssl=tls)
    app.conf.bigmodel_settings = settings
    app.conf.bigmodel_queues = QUEUES
    return app


def job_sender(app: Celery) -> Callable[[dict[str, Any]], None]:
    """Publish a job record's task (task id = job id) on its queue, with its priority and time limits."""

    def send(record: dict[str, Any]) -> None:
        limits = record.get("limits") or {}
        app.send_task(
            RUN_JOB, args=[record["id"]], task_id=record["id"], queue=record["queue"],
            # The default exchange routes by queue name alone: no binding in Redis that a flush could lose.
            exchange="",
            priority=priority_to_broker(record["priority"]),
            soft_time_limit=limits.get("soft"), time_limit=limits.get("hard"),
            # The record is the result: without this, each send SUBSCRIBEs to the task's result
            # channel and UNSUBSCRIBEs again (two Redis round trips and a pub/sub connection per job).
            ignore_result=True,
            retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )

    return send
