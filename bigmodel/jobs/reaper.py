"""The reaper: the one owner of recovery.

Every worker runs it every half lease period. It reads the jobs whose deadline passed from one
sorted set and makes one decision per job in one Lua script (jobs/scripts.REAP), so that any number
of reapers may run at once: a running job whose lease lapsed goes back to its queue with its attempt
counted (or ends `failed` with `worker_lost` past max_attempts, `time_limit` past its hard limit,
`cancelled` if a cancel was asked); a queued job that was never published, or whose message a worker
took and never claimed, is published again. It also retries writing final records that did not reach
the store.
"""

from __future__ import annotations

import logging
from collections import Counter

import redis

from bigmodel.jobs.records import Jobs

log = logging.getLogger(__name__)


class Reaper:
    """Recovers lost, unpublished and unpersisted jobs; safe to run in many processes at once."""

    def __init__(self, jobs: Jobs, max_attempts: int, batch: int = 100) -> None:
        self.jobs = jobs
        self.max_attempts = max_attempts
        self.batch = batch

    @property
    def period(self) -> float:
        """Seconds between passes: half a lease, so a lapsed lease is acted on within 1.5 leases."""
        return max(self.jobs.lease_seconds / 2, 0.2)

    def _redis_just_started(self) -> bool:
        # A restarted Redis (AOF) comes back with leases that lapsed while it was down, through no
        # fault of their workers: give the workers one lease period to renew before judging them.
        uptime = int(self.jobs.r.info("server").get("uptime_in_seconds", 0))
        return uptime < self.jobs.lease_seconds

    def run_once(self) -> Counter[str]:
        """One pass: decide about every job whose deadline passed; returns how many got each outcome."""
        outcomes: Counter[str] = Counter()
        if self._redis_just_started():
            return outcomes
        for job_id in self.jobs.due(self.batch):
            outcome = self.jobs.reap(job_id, self.max_attempts)
            outcomes[outcome] += 1
            if outcome not in ("alive", "gone"):
                log.info("reaper: job %s -> %s", job_id, outcome)
        admitted = self.jobs.admit_waiting()  # room made by workers that joined
        if admitted:
            outcomes["admitted"] += admitted
        for job_id in self.jobs.unpersisted(older_than=2 * self.jobs.lease_seconds, limit=self.batch):
            outcomes["persisted" if self.jobs.persist(job_id) else "unpersisted"] += 1
        return outcomes

    def run_safely(self) -> Counter[str]:
        """run_once, but a failed pass is logged and tried again next time (the caller's thread lives on)."""
        try:
            return self.run_once()
        except redis.exceptions.RedisError as exc:
            log.warning("reaper pass skipped: Redis error %s", type(exc).__name__)
        except Exception:  # a bug must not stop the heartbeats that share the thread
            log.exception("reaper pass failed")
        return Counter()
