"""The one Celery task: run a job by id. Everything else lives in bigmodel.jobs.execution."""

from __future__ import annotations

import os

from celery import Task, shared_task

from bigmodel.jobs.execution import execute
from workers.celery_app import RUN_JOB
from workers.resources import handles


@shared_task(name=RUN_JOB, bind=True, acks_late=True, max_retries=None)
def run_job(self: Task, job_id: str) -> str:
    """Claim and run job `job_id`; a job another live worker holds is looked at again after a lease."""
    h = handles(self.app.conf.bigmodel_settings)
    worker = f"{self.request.hostname}#{os.getpid()}"
    outcome = execute(job_id, jobs=h.jobs, store=h.store, settings=h.settings, worker=worker)
    if outcome == "held":
        # Another worker holds a live lease: if it dies, the lease lapses and we take over then.
        raise self.retry(countdown=h.settings.lease_seconds, max_retries=None)
    return outcome
