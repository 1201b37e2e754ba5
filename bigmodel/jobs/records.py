"""Job records, events and leases in Redis: the one place a job's state changes (through jobs/scripts)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis

from bigmodel.clock import now_iso
from bigmodel.config import Settings
from bigmodel.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded
from bigmodel.jobs import scripts
from bigmodel.jobs.archive import Archive, attempt_folder
from bigmodel.jobs.fields import FINAL_STATES, Claim, Sender, Signals, decode, encode, text
from bigmodel.jobs.presence import Presence, queue_keys
from bigmodel.jobs.states import TERMINAL, JobState
from bigmodel.jobs.waiting import Reason, RecentWorkers, waiting
from bigmodel.limits import setting_of
from bigmodel.names import is_event_id, is_job_id
from bigmodel.rebuild import ensure_index, epoch_of
from bigmodel.retrying import retry_transient
from bigmodel.stats import RedisMetrics
from bigmodel.store import Store

log = logging.getLogger(__name__)
# Named here because Jobs has a method called `list`, which annotations inside the class would find.
Ids = list[str]
Events = list[tuple[str, dict[str, Any]]]
Page = tuple[list[dict[str, Any]], str | None]
Artifacts = list[dict[str, Any]]
Records = list[dict[str, Any]]


class Jobs:
    """Creates, moves, lists and watches job records; every change is one atomic Redis step."""

    def __init__(self, client: redis.Redis, store: Store | None = None, *, settings: Settings | None = None,
                 send: Sender | None = None, lease_seconds: float | None = None, prefix: str = "bm") -> None:
        settings = settings or Settings()
        self.r = client
        self.store = store
        self.send = send
        self.prefix = prefix
        self.job_ttl = settings.job_ttl_seconds
        self.event_limit = settings.event_limit
        self.index_limit = settings.job_index_limit
        self.idempotency_ttl = settings.idempotency_ttl
        self.lease_seconds = float(lease_seconds if lease_seconds is not None else settings.lease_seconds)
        # How long a job may stay unpublished, or delivered but unclaimed, before the reaper acts;
        # and how often it checks that a published job's message is still on its queue.
        self.grace_ms = int(self.lease_seconds * 1000)
        self.check_ms = 5 * self.grace_ms
        self.archive = Archive(store) if store is not None else None
        self.deadlines_key = f"{prefix}:deadlines"
        self.persist_key = f"{prefix}:persist"
        self.metrics = RedisMetrics(client, prefix)
        self.limits = settings.limits
        self.workers = RecentWorkers(Presence(client, prefix))
        self.lines_key = f"{prefix}:lines"
        self._scripts = {name: client.register_script(getattr(scripts, name)) for name in (
            "CREATE", "PUBLISHED", "DELIVERED", "CLAIM", "RENEW", "PROGRESS", "LOG", "FINISH", "HAND_BACK",
            "REQUEST_HANDOVER", "CANCEL", "REAP", "RECHECK", "FAN_OUT", "ADMIT", "ADMIT_NEXT")}

    # keys -----------------------------------------------------------------
    def key(self, job_id: str) -> str:
        """The hash that holds a job record."""
        return f"{self.prefix}:job:{job_id}"

    def events_key(self, job_id: str) -> str:
        """The stream of a job's events."""
        return f"{self.prefix}:job:{job_id}:events"

    def index_key(self, tenant: str) -> str:
        """The sorted set of a tenant's job ids by creation time."""
        return f"{self.prefix}:t:{tenant}:jobs"

    def quota_keys(self, tenant: str, queue: str, gpu: bool) -> dict[str, Any]:
        """The tenant's sets a job is counted in, and its line on the job's queue (see scripts.ADMIT)."""
        base = f"{self.prefix}:t:{tenant}"
        gpu_set = [f"{base}:admitted:gpu"] if gpu else []
        admitted = [f"{base}:admitted:{queue}", f"{base}:admitted", *gpu_set]
        return {"queued": f"{base}:queued", "admitted": admitted, "line": f"{base}:line:{queue}",
                "lines": self.lines_key, "member": f"{tenant}/{queue}"}

    def slots(self, queue: str) -> int:
        """How many of one tenant's jobs may be on `queue` at once: its worker processes, plus one ready
        for the next free process. With no worker online, only the tenant's running cap applies."""
        processes = sum(int(w.get("concurrency", 1)) for w in self.workers() if queue in w.get("queues", []))
        return processes + 1 if processes else self.limits.tenant_running

    def _final_keys(self, job_id: str) -> list[str]:
        return [self.key(job_id), self.events_key(job_id), self.deadlines_key, self.persist_key]

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=args)

    # creation and publishing ----------------------------------------------------
    def create(self, *, tenant: str, type: str, params: dict[str, Any], queue: str,
               priority: int = 5, resources: dict[str, Any] | None = None,
               idempotency_key: str | None = None, waiting: Any = None,
               limits: dict[str, int] | None = None, job_id: str | None = None,
               parent: str | None = None, weight: int = 1,
               ) -> tuple[dict[str, Any], bool]:
        """Write a queued job in one round trip; returns (record, created); created is False on a replay
        (the idempotency key names a job, or a job with this id exists: a child made again)."""
        job_id = job_id or uuid.uuid4().hex
        record = {
            "id": job_id, "tenant": tenant, "type": type, "state": JobState.QUEUED.value,
            "queue": queue, "priority": priority, "params": params, "resources": resources or {},
            "progress": None, "attempts": 0, "handovers": 0, "worker": None, "created_at": now_iso(),
            "started_at": None, "finished_at": None, "result": None, "error": None,
            "artifacts": [], "cancel_requested": False, "waiting": waiting, "limits": limits,
            "parent": parent, "children": None,
        }  # fmt: skip
        # The key is the client's text: hashed, so that it never becomes part of a Redis key as given.
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest() if idempotency_key else ""
        idem = f"{self.prefix}:t:{tenant}:idem:{digest}" if idempotency_key else ""
        fields = {k: encode(k, v) for k, v in record.items()}
        fields["published"] = "false"
        quota = self.quota_keys(tenant, queue, bool((resources or {}).get("gpu")))
        fields["quota"] = json.dumps(quota)
        if parent is not None:
            fields["parent_key"] = json.dumps(self.key(parent))
            fields["weight"] = json.dumps(weight)
        now = time.time()
        created, existing_id = self._run(
            "CREATE", [self.key(job_id), self.index_key(tenant), idem, self.events_key(job_id),
                       self.deadlines_key, quota["queued"]],
            [job_id, now * 1e6, json.dumps(fields), self.idempotency_ttl, record["created_at"],
             self.grace_ms, self.index_limit, (now - self.job_ttl) * 1e6, self.event_limit,
             self.limits.tenant_queued],
        )
        if created == -1:
            cap = self.limits.tenant_queued
            raise QuotaExceeded(
                f"tenant {tenant!r} has {existing_id} queued jobs, its limit ({setting_of('tenant_queued')}"
                f"={cap}); submit again once some of them have started",
                limit="tenant_queued", max=cap, setting=setting_of("tenant_queued"), retry_after=5)
        if not created:
            return self.get(text(existing_id), tenant), False
        return record, True

    def publish(self, job_id: str, record: dict[str, Any] | None = None) -> bool:
        """Put a queued job's message on its queue and mark it published; False if it could not be sent.

        A job left unpublished (the broker refused, this process died) is published by the reaper
        once its grace time has passed, so a failure here loses nothing.
        """
        if self.send is None:
            raise RuntimeError("this Jobs has no sender: it cannot publish")
        try:
            record = record or self.get(job_id)  # a caller that just wrote the record saves a read
            if self.admit(record) != "send":
                return False  # not queued, or waiting in its tenant's line (admit_next publishes it)
            self.send(record)
            self._run("PUBLISHED", [self.key(job_id), self.deadlines_key], [job_id, self.check_ms])
            return True
        except Exception as exc:  # noqa: BLE001 - any broker failure: the reaper publishes it later
            log.warning("could not publish job %s (%s); the reaper will", job_id, type(exc).__name__)
            return False

    def admit(self, record: dict[str, Any]) -> str:
        """The tenant's turn for a queued job: 'send' (admitted), 'lined' (in its tenant's line) or 'no'."""
        queue, tenant = record["queue"], record["tenant"]
        score = (9 - int(record["priority"])) * 1e13 + epoch_of(record["created_at"]) * 1000
        told = waiting(Reason.TENANT_QUOTA, f"waits its turn in tenant {tenant}'s line: the tenant has as "
                       f"many jobs on the {queue} queue or running as it may ({setting_of('tenant_running')}"
                       f"={self.limits.tenant_running}, or the {queue} pool's processes + 1); it goes onto "
                       "the queue when one of them ends")
        return text(self._run("ADMIT", [self.key(record["id"]), self.deadlines_key],
                              [record["id"], self.slots(queue), self.limits.tenant_running,
                               self.limits.tenant_gpu_jobs, score, json.dumps(told)]))

    def admit_next(self, tenant: str, queue: str, most: int = 100) -> Ids:
        """Publish the heads of a tenant's line on `queue` while the tenant has room there."""
        quota = self.quota_keys(tenant, queue, False)
        ids = [text(i) for i in self._run(
            "ADMIT_NEXT", [quota["line"], self.lines_key, self.deadlines_key],
            [quota["member"], self.slots(queue), self.limits.tenant_running, self.limits.tenant_gpu_jobs,
             self.grace_ms, f"{self.prefix}:job:", most])]
        if self.send is not None:
            for job_id in ids:
                self.publish(job_id)
        return ids

    def admit_waiting(self) -> int:
        """admit_next for every tenant and queue with a line (the reaper's pass: workers that joined)."""
        admitted = 0
        for member in self.r.smembers(self.lines_key):
            tenant, _, queue = text(member).partition("/")
            admitted += len(self.admit_next(tenant, queue))
        return admitted

    def delivered(self, job_id: str, node: str) -> bool:
        """A worker took the job's message: if nobody claims the job soon, the reaper publishes it again."""
        if not is_job_id(job_id):
            return False
        return bool(self._run("DELIVERED", [self.key(job_id), self.deadlines_key],
                              [job_id, node, self.grace_ms]))

    # reading ----------------------------------------------------------------
    def get(self, job_id: str, tenant: str | None = None) -> dict[str, Any]:
        """The record of a job; another tenant's job is NotFound, like a missing one."""
        if not is_job_id(job_id):  # never let a malformed id become a Redis key or a store path
            raise NotFound(f"no job {job_id!r}")
        raw = self.r.hgetall(self.key(job_id))
        record = decode(raw) if raw else self._from_store(job_id, tenant)
        if record is None or (tenant is not None and record["tenant"] != tenant):
            raise NotFound(f"no job {job_id!r}")
        return record

    def _from_store(self, job_id: str, tenant: str | None) -> dict[str, Any] | None:
        # Redis holds live state; a finished job's record also lives in the store.
        if self.archive is None or tenant is None:
            return None
        return self.archive.read(tenant, job_id)

    def list(self, tenant: str, *, state: str | None = None, type: str | None = None,
             limit: int = 50, cursor: str | None = None) -> Page:
        """Newest first, filtered by state and type; returns (items, next cursor or None)."""
        if self.store is not None:  # after Redis lost its data, the listing comes back from the store
            ensure_index(self.r, self.index_key(tenant), self.store.tenant(tenant), "jobs", "record.json",
                         lambda rec: epoch_of(rec.get("created_at")) * 1e6, self.index_limit)
        items: list[dict[str, Any]] = []
        max_score: str = f"({cursor}" if cursor else "+inf"
        batch = max(limit * 2, 50)
        while len(items) < limit:
            page: Any = self.r.zrevrangebyscore(self.index_key(tenant), max_score, "-inf",
                                                start=0, num=batch, withscores=True)
            if not page:
                return items, None
            pipe = self.r.pipeline(transaction=False)
            for job_id, _ in page:
                pipe.hgetall(self.key(text(job_id)))
            for (job_id, score), raw in zip(page, pipe.execute(), strict=True):
                max_score = f"({score!r}"
                record = decode(raw) if raw else self._from_store(text(job_id), tenant)
                if record is None or record.get("tenant") != tenant:
                    continue
                if (state and record["state"] != state) or (type and record["type"] != type):
                    continue
                items.append(record)
                if len(items) == limit:
                    return items, repr(score)
            if len(page) < batch:
                return items, None
        return items, None

    # worker side --------------------------------------------------------------
    def claim(self, job_id: str, worker: str) -> Claim:
        """Take a queued job for this worker as a new attempt; retried through Redis blips, idempotently."""
        if not is_job_id(job_id):
            return Claim("missing")
        token = uuid.uuid4().hex
        keys = [self.key(job_id), self.events_key(job_id), self.deadlines_key]
        args = [job_id, worker, int(self.lease_seconds * 1000), now_iso(), token, self.event_limit]
        answer: Any = retry_transient(lambda: self._run("CLAIM", keys, args), what=f"claim {job_id}")
        outcome, attempt, *flat = answer
        record = decode(dict(zip(flat[::2], flat[1::2], strict=True))) if flat else None
        return Claim(text(outcome), int(attempt or 0), record)

    def renew(self, job_id: str, attempt: int) -> bool:
        """Extend the lease of this attempt; False when it is no longer the job's current attempt."""
        return bool(self._run("RENEW", [self.key(job_id), self.deadlines_key],
                              [job_id, attempt, int(self.lease_seconds * 1000)]))

    def progress(self, job_id: str, attempt: int, progress: dict[str, Any]) -> bool:
        """Record progress and append a progress event (only while `attempt` is current)."""
        event = json.dumps({"type": "progress", "ts": now_iso(), "data": progress})
        return bool(self._run("PROGRESS", [self.key(job_id), self.events_key(job_id)],
                              [attempt, json.dumps(progress), event, self.event_limit]))

    def log(self, job_id: str, message: str, level: str = "info", attempt: int | None = None) -> None:
        """Append a log line to the job's events (from a running attempt: only while it is current)."""
        event = json.dumps({"type": "log", "ts": now_iso(), "data": {"level": level, "message": message}})
        if attempt is None:
            self.r.xadd(self.events_key(job_id), {"e": event}, maxlen=self.event_limit, approximate=True)
        else:
            self._run("LOG", [self.key(job_id), self.events_key(job_id)], [attempt, event, self.event_limit])

    def signals(self, job_id: str, attempt: int) -> Signals:
        """Whether `attempt` is still current, and whether a cancel or a hand-over was asked."""
        state, current, cancel, handover = self.r.hmget(
            self.key(job_id), ["state", "attempts", "cancel_requested", "handover_requested"])
        is_current = state == b"running" and current is not None and int(current) == attempt
        return Signals(is_current, cancel == b"true", handover == b"true")

    def finish(self, job_id: str, attempt: int, state: JobState, *, result: Any = None,
               error: dict[str, str] | None = None,
               artifacts: Artifacts | None = None, usage: dict[str, Any] | None = None) -> bool:
        """Move a running job to a final state if `attempt` is still current; False if it is not."""
        if state not in TERMINAL:
            raise ValueError(f"{state} is not a final state")
        fields: dict[str, Any] = {"result": result, "error": error,
                                  "progress": self._final_progress(job_id, state)}
        if artifacts is not None:
            fields["artifacts"] = artifacts
        if usage is not None:
            fields["usage"] = usage
        encoded = json.dumps({k: encode(k, v) for k, v in fields.items()})
        data = json.dumps({"state": state.value, **({"error": error} if error else {})})
        args = [job_id, attempt, state.value, encoded, now_iso(), self.job_ttl, data, self.event_limit]
        outcome = text(retry_transient(lambda: self._run("FINISH", self._final_keys(job_id), args),
                                        what=f"finish {job_id}"))
        if outcome == "ok":
            self._became_final(job_id)
        return outcome == "ok"

    def _final_progress(self, job_id: str, state: JobState) -> Any:
        raw = self.r.hget(self.key(job_id), "progress")
        progress = json.loads(raw) if raw else None
        if state is JobState.SUCCEEDED:
            progress = {**(progress or {}), "percent": 100.0}
        return progress

    def fan_out(self, job_id: str, attempt: int, children: Ids, total_weight: int) -> str:
        """Park a running attempt on its (already created) children and let its worker go.

        Returns 'waiting', 'wake' (every child had already ended: the job is queued again and
        published here) or 'superseded'.
        """
        keys = [self.key(job_id), self.events_key(job_id), self.deadlines_key, *map(self.key, children)]
        args = [job_id, attempt, json.dumps(children), total_weight, self.grace_ms, now_iso(),
                self.event_limit]
        outcome = text(retry_transient(lambda: self._run("FAN_OUT", keys, args), what=f"fan out {job_id}"))
        if outcome == "wake" and self.send is not None:
            self.publish(job_id)
        elif outcome == "waiting":
            tenant, queue = self.r.hmget(self.key(job_id), ["tenant", "queue"])
            # its slot is free for its children and its tenant's other jobs
            self.admit_next(json.loads(tenant or "null"), json.loads(queue or "null"))
        return outcome

    def records(self, job_ids: Ids, tenant: str) -> Records:
        """The records of several jobs in one round trip (from the store for those Redis no longer has)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.key(job_id))
        found = [decode(raw) if raw else self._from_store(job_id, tenant)
                 for job_id, raw in zip(job_ids, pipe.execute(), strict=True)]
        return [r for r in found if r is not None and r.get("tenant") == tenant]

    def hand_back(self, job_id: str, attempt: int | None, reason: str, *, worker: str = "") -> str:
        """Give a running job back to its queue (a stopping worker); costs no attempt. Publishes it.

        `attempt` fences the hand-back to one attempt; with None, whatever attempt `worker` (a
        process, already stopped by its stopping worker) holds is handed back.
        """
        args = [job_id, "" if attempt is None else attempt, worker, now_iso(), self.grace_ms,
                reason, self.job_ttl, self.event_limit]
        outcome = text(retry_transient(lambda: self._run("HAND_BACK", self._final_keys(job_id), args),
                                        what=f"hand back {job_id}"))
        if outcome == "queued" and self.send is not None:
            self.publish(job_id)
        elif outcome == "cancelled":
            self._became_final(job_id)
        return outcome

    def request_handover(self, job_ids: Ids, worker_prefix: str) -> int:
        """Ask the running jobs held by processes of `worker_prefix` to come back at their next checkpoint."""
        asked = 0
        for job_id in job_ids:
            if is_job_id(job_id):
                asked += int(self._run("REQUEST_HANDOVER", [self.key(job_id)], [worker_prefix]))
        return asked

    # recovery (the reaper) ------------------------------------------------------
    def due(self, limit: int = 100) -> Ids:
        """Jobs whose deadline passed (lapsed leases, unpublished or unclaimed jobs), oldest first."""
        due = self.r.zrangebyscore(self.deadlines_key, "-inf", self._redis_ms(), start=0, num=limit)
        return [text(j) for j in due]

    def reap(self, job_id: str, max_attempts: int) -> str:
        """The one recovery decision for a job whose deadline passed; publishes or finalizes as decided."""
        args = [job_id, max_attempts, now_iso(), self.grace_ms, self.job_ttl, self.event_limit]
        outcome = text(self._run("REAP", self._final_keys(job_id), args))
        if outcome == "check":
            queue = json.loads(self.r.hget(self.key(job_id), "queue") or "null")
            empty = queue is None or not sum(self.r.llen(k) for k in queue_keys(queue))
            outcome = text(self._run("RECHECK", [self.key(job_id), self.deadlines_key],
                                      [job_id, int(empty), self.grace_ms, self.check_ms]))
        if outcome == "publish" and self.send is not None:
            self.publish(job_id)
        elif outcome in FINAL_STATES:
            self._became_final(job_id)
        return outcome

    def unpersisted(self, older_than: float, limit: int = 100) -> Ids:
        """Final jobs whose record did not reach the store yet (older than `older_than` seconds)."""
        top = self._redis_ms() - older_than * 1000
        return [text(j) for j in self.r.zrangebyscore(self.persist_key, "-inf", top, start=0, num=limit)]

    def _redis_ms(self) -> int:
        seconds, micros = self.r.time()  # type: ignore[misc]
        return int(seconds) * 1000 + int(micros) // 1000

    # user side ----------------------------------------------------------------
    def cancel(self, job_id: str, tenant: str) -> dict[str, Any]:
        """Cancel a queued job (or one whose worker is gone) at once, or flag a running one.

        A finished job is a Conflict.
        """
        record = self.get(job_id, tenant)
        outcome = text(self._run("CANCEL", self._final_keys(job_id),
                                  [job_id, now_iso(), self.job_ttl, self.event_limit]))
        if outcome == "cancelled-now":
            self._became_final(job_id)
        elif outcome != "requested":
            state = record["state"] if outcome == "missing" else outcome
            raise Conflict(f"job {job_id} is already {state}")
        return self.get(job_id, tenant)

    def events(self, job_id: str, after: str = "0-0", block_ms: int | None = None,
               count: int = 500) -> Events:
        """Events after a stream id, optionally waiting up to block_ms for new ones."""
        if not is_event_id(after):
            raise InvalidRequest(f"invalid event id {after!r}: expected an id such as '1700000000000-0'")
        key = self.events_key(job_id)
        entries: Any
        if block_ms is None:
            entries = self.r.xrange(key, min=f"({after}" if after not in ("0", "0-0") else "-", count=count)
        else:
            answer: Any = self.r.xread({key: after}, count=count, block=block_ms)
            entries = answer[0][1] if answer else []
        return [(text(eid), json.loads(fields[b"e"])) for eid, fields in entries]

    def iter_events(self, job_id: str, after: str = "0-0", *, poll_ms: int = 1000,
                    deadline: float | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Follow a job's events until it is finished (its last events, then an `end` event) or `deadline`.

        While nothing happens it yields `keepalive` events (one per poll).
        """
        while True:
            batch = self.events(job_id, after, block_ms=poll_ms)
            for eid, event in batch:
                after = eid
                yield eid, event
            if not batch:
                state = self.r.hget(self.key(job_id), "state")
                if state is None or text(state) in FINAL_STATES:
                    for eid, event in self.events(job_id, after):
                        yield eid, event
                    yield "", {"type": "end"}
                    return
                yield "", {"type": "keepalive"}
            if deadline is not None and time.monotonic() > deadline:
                return

    # the store, the system of record -------------------------------------------
    def _became_final(self, job_id: str) -> None:
        # The one place where a job is known to have just become final: exactly once per job, by
        # whoever's script made it final (a metric counted here counts each job once; `persist`
        # may run again for the same job when the reaper retries a failed store write).
        raw = self.r.hgetall(self.key(job_id))
        record = decode(raw)
        if record.get("id"):
            self.metrics.job_ended(record)
        self.persist(job_id, raw)
        if record.get("tenant") and record.get("queue"):
            self.admit_next(record["tenant"], record["queue"])  # its slot goes to the next in its line
        if record.get("parent") and self.send is not None:
            self.publish(record["parent"])  # the last child woke its parent (publish skips it otherwise)
        if record.get("children") and record.get("state") != JobState.SUCCEEDED.value:
            self._cancel_children(record["children"])

    def _cancel_children(self, children: Ids) -> None:
        # A parent that ended early (cancelled, failed) takes its unfinished children with it.
        for child in children:
            if not is_job_id(child):
                continue
            outcome = text(self._run("CANCEL", self._final_keys(child),
                                      [child, now_iso(), self.job_ttl, self.event_limit]))
            if outcome == "cancelled-now":
                self._became_final(child)

    def persist(self, job_id: str, raw: dict[Any, Any] | None = None) -> bool:
        """Write a final job's record and events to the store and drop the superseded attempts' files.

        A job that could not be written stays in the persist set, where the reaper finds it again.
        True when written. `raw` is the job's hash when the caller just read it.
        """
        raw = raw if raw is not None else self.r.hgetall(self.key(job_id))
        if not raw or text(raw.get(b"state", b"")) not in FINAL_STATES or self.archive is None:
            self.r.zrem(self.persist_key, job_id)
            return False
        finished_by = json.loads(raw.get(b"finished_by", b"null"))
        committed = finished_by if isinstance(finished_by, int) else None
        events = [e for _, e in self.events(job_id, count=self.event_limit)]
        if not self.archive.write(decode(raw), events, committed):
            return False
        self.r.zrem(self.persist_key, job_id)
        return True


__all__ = ["FINAL_STATES", "Claim", "Jobs", "Sender", "Signals", "attempt_folder"]
