"""The Celery app, built from Settings in one place."""

from __future__ import annotations

from celery import Celery

from bigmodel.config import Settings
from bigmodel.connections import celery_tls_options
from bigmodel.jobs.presence import PRIORITY_SEP, PRIORITY_STEPS, QUEUES

RUN_JOB = "bigmodel.run_job"


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app on Redis, configured for ML jobs that must never be lost or run twice at once."""
    settings = settings or Settings.from_env()
    app = Celery("bigmodel", broker=settings.redis_url, backend=settings.redis_url)
    transport = {
        # Longer than the hard time limit, or Redis redelivers long jobs while they run (celery#5935).
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
        # A crash redelivers the job instead of losing it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Soft shutdown: a stopping worker gives running jobs a moment, then hands them back.
        worker_soft_shutdown_timeout=10.0,
        worker_enable_soft_shutdown_on_idle=True,
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
