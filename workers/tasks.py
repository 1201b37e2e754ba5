"""The one Celery task: run a job by id. Everything else lives in bigmodel.jobs.execution."""

from __future__ import annotations

import os

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from bigmodel.jobs.execution import execute
from workers.celery_app import RUN_JOB
from workers.resources import handles


@shared_task(name=RUN_JOB, bind=True, acks_late=True)
def run_job(self: Task, job_id: str) -> str:
    """Claim and run job `job_id`; a message for a job that another attempt holds or that ended is spent."""
    h = handles(self.app)
    worker = f"{self.request.hostname}#{os.getpid()}"
    return execute(job_id, jobs=h.jobs, store=h.store, settings=h.settings, worker=worker,
                   time_limit_errors=(SoftTimeLimitExceeded,))
