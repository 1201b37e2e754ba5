"""Run one job on this worker: claim it, hold its lease, call its runner, let the state script decide."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from bigmodel.config import Settings
from bigmodel.errors import BigModelError, FannedOut, HandOver, JobCancelled, Superseded
from bigmodel.jobs.context import JobContext
from bigmodel.jobs.jobtypes import JOB_TYPES
from bigmodel.jobs.records import Jobs
from bigmodel.jobs.states import JobState
from bigmodel.jobs.usage import Meter
from bigmodel.retrying import is_transient, retry_transient
from bigmodel.store import Store

log = logging.getLogger(__name__)


class LeaseKeeper(threading.Thread):
    """Renews a running attempt's lease until stopped; marks the context superseded if it is not current."""

    def __init__(self, jobs: Jobs, ctx: JobContext) -> None:
        super().__init__(name=f"lease-{ctx.job_id}", daemon=True)
        self.jobs, self.ctx = jobs, ctx
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = max(self.jobs.lease_seconds / 3, 0.2)
        while not self.stopped.wait(interval):
            try:
                if not self.jobs.renew(self.ctx.job_id, self.ctx.attempt):
                    self.ctx.current = False
                    return
            except Exception:  # Redis blips: try again at the next tick; renewal also revives a lapsed lease
                log.warning("could not renew the lease of job %s", self.ctx.job_id)


def error_of(exc: BaseException) -> dict[str, str]:
    """A job's `error` field for an exception: its snake_case type and a readable message (no traceback)."""
    if isinstance(exc, BigModelError):
        kind, message = exc.code, str(exc) or exc.code
    elif isinstance(exc, MemoryError):
        kind, message = "out_of_memory", "the job ran out of memory"
    elif is_transient(exc):
        kind, message = "unavailable", f"a service did not answer: {type(exc).__name__}"
    else:  # an unexpected exception: one type for all, the class name kept in the message
        kind, message = "internal_error", f"{type(exc).__name__}: {exc}"
    stage = getattr(exc, "bigmodel_stage", None)
    out = {"type": kind, "message": message[:4000]}
    if stage:
        out["stage"] = stage
        out["message"] = f"{stage} stage failed: {out['message']}"
    return out


def execute(job_id: str, *, jobs: Jobs, store: Store, settings: Settings, worker: str,
            time_limit_errors: tuple[type[BaseException], ...] = ()) -> str:
    """Run a job if it is this worker's to run; returns the claim outcome, the final state,
    'queued' (handed back), 'fanned_out' (its child jobs run; it runs again after them) or
    'superseded' (another attempt owns the job; nothing was committed).

    `time_limit_errors` are the exceptions the process raises inside a job past its soft time limit.
    """
    claim = jobs.claim(job_id, worker)
    if not claim.claimed:
        return claim.outcome  # held by another attempt, finished, or unknown: this message is spent
    record = claim.record or retry_transient(lambda: jobs.get(job_id), what=f"read job {job_id}")
    ctx = JobContext(record, jobs, store, worker, settings, attempt=claim.attempt)
    keeper = LeaseKeeper(jobs, ctx)
    keeper.start()
    state, result, error = JobState.FAILED, None, None
    meter = Meter(store)  # the job's usage: wall and CPU time, peak memory, bytes written to the store
    try:
        result = _run(ctx)
        state = JobState.SUCCEEDED
    except HandOver as exc:
        keeper.stopped.set()
        ctx.discard()
        log.info("job %s handed over: %s", job_id, exc)
        return jobs.hand_back(job_id, ctx.attempt, str(exc))
    except FannedOut as exc:  # its children run now; the last one to end requeues it for its next step
        keeper.stopped.set()
        log.info("job %s: %s", job_id, exc)
        return "fanned_out"
    except Superseded:
        keeper.stopped.set()
        ctx.discard()
        return "superseded"
    except JobCancelled as exc:
        state, error = JobState.CANCELLED, {"type": JobCancelled.code, "message": str(exc)}
    except time_limit_errors:
        limit = (record.get("limits") or {}).get("soft")
        error = {"type": "time_limit", "message": f"the job ran past its soft time limit ({limit} s)"}
    except Exception as exc:  # a worker survives any job: every failure becomes a `failed` record
        error = error_of(exc)
        log.warning("job %s failed: %s: %s", job_id, error["type"], error["message"])
        log.debug("traceback of job %s", job_id, exc_info=True)
    finally:
        keeper.stopped.set()
    # Even if renewals failed, try: the state script knows whether this attempt is still current.
    if not jobs.finish(job_id, ctx.attempt, state, result=result, error=error, artifacts=ctx.artifacts,
                       usage=meter.stop()):
        ctx.discard()
        return "superseded"
    return state.value


def _run(ctx: JobContext) -> Any:
    # The one place a runner is called.
    runner = JOB_TYPES[ctx.job["type"]].load_runner()
    result = runner(ctx)
    json.dumps(result)  # only JSON goes into Redis and the record; fail here, not later
    return result
