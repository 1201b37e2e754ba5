"""Run one job on this worker: claim it, hold its lease, call its runner, record the outcome."""

from __future__ import annotations

import json
import logging
import threading

from bigmodel.config import Settings
from bigmodel.errors import BigModelError, JobCancelled
from bigmodel.jobs.context import JobContext
from bigmodel.jobs.jobtypes import JOB_TYPES
from bigmodel.jobs.records import Jobs
from bigmodel.jobs.states import JobState
from bigmodel.jobs.usage import Meter
from bigmodel.store import Store

log = logging.getLogger(__name__)


class LeaseKeeper(threading.Thread):
    """Renews a running job's lease until stopped; flags the context if the lease is lost."""

    def __init__(self, jobs: Jobs, ctx: JobContext, lease_seconds: int) -> None:
        super().__init__(name=f"lease-{ctx.job_id}", daemon=True)
        self.jobs, self.ctx, self.lease_seconds = jobs, ctx, lease_seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = max(self.lease_seconds / 3, 0.5)
        while not self.stopped.wait(interval):
            try:
                if not self.jobs.renew(self.ctx.job_id, self.ctx.worker, self.lease_seconds):
                    self.ctx.lease_lost = True
                    return
            except Exception:  # Redis blips: try again at the next tick, the lease has slack
                log.warning("could not renew the lease of job %s", self.ctx.job_id)


def error_of(exc: BaseException) -> dict[str, str]:
    """A job's `error` field for an exception: its type and a readable message (no traceback)."""
    if isinstance(exc, BigModelError):
        kind, message = exc.code, str(exc) or exc.code
    elif isinstance(exc, MemoryError):
        kind, message = "out_of_memory", "the job ran out of memory"
    else:  # an unexpected exception: one type for all, the class name kept in the message
        kind, message = "internal_error", f"{type(exc).__name__}: {exc}"
    stage = getattr(exc, "bigmodel_stage", None)
    out = {"type": kind, "message": message[:4000]}
    if stage:
        out["stage"] = stage
        out["message"] = f"{stage} stage failed: {out['message']}"
    return out


def execute(job_id: str, *, jobs: Jobs, store: Store, settings: Settings, worker: str) -> str:
    """Run a job if it is this worker's to run; returns the claim outcome or the final state."""
    claim = jobs.claim(job_id, worker, settings.lease_seconds, settings.max_attempts)
    if not claim.claimed:
        return claim.outcome
    record = jobs.get(job_id)
    ctx = JobContext(record, jobs, store, worker, settings)
    keeper = LeaseKeeper(jobs, ctx, settings.lease_seconds)
    keeper.start()
    state, result, error = JobState.FAILED, None, None
    meter = Meter(store)  # the job's usage: wall and CPU time, peak memory, bytes written to the store
    try:
        runner = JOB_TYPES[record["type"]].load_runner()
        result = runner(ctx)
        json.dumps(result)  # only JSON goes into Redis and the record; fail here, not later
        state = JobState.SUCCEEDED
    except JobCancelled as exc:
        state, error = JobState.CANCELLED, {"type": JobCancelled.code, "message": str(exc)}
    except Exception as exc:  # a worker survives any job: every failure becomes a `failed` record
        error = error_of(exc)
        log.warning("job %s failed: %s: %s", job_id, error["type"], error["message"])
        log.debug("traceback of job %s", job_id, exc_info=True)
    finally:
        keeper.stopped.set()
    if ctx.lease_lost:
        return "lost"
    jobs.finish(job_id, worker, state, result=result, error=error, artifacts=ctx.artifacts,
                usage=meter.stop())
    return state.value
