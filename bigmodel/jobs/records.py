"""Job records, events and leases in Redis: the one place a job's state changes (through jobs/scripts)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from bigmodel.clock import now_iso
from bigmodel.config import Settings
from bigmodel.errors import BigModelError, Conflict, InvalidRequest, NotFound
from bigmodel.jobs import scripts
from bigmodel.jobs.presence import queue_keys
from bigmodel.jobs.states import TERMINAL, JobState
from bigmodel.names import is_event_id, is_job_id
from bigmodel.rebuild import ensure_index, epoch_of
from bigmodel.retrying import retry_transient
from bigmodel.store import Store

log = logging.getLogger(__name__)

# What a job record holds (the API shows a subset; record.json in the store holds all of it).
RECORD_FIELDS = (
    "id", "tenant", "type", "state", "queue", "priority", "params", "resources", "progress",
    "attempts", "handovers", "worker", "created_at", "started_at", "finished_at", "result", "error",
    "artifacts", "cancel_requested", "waiting", "limits",
)  # fmt: skip
FINAL_STATES = frozenset(s.value for s in TERMINAL)
ATTEMPT_FOLDER = re.compile(r"^attempt-([0-9]+)$")

# Publishes a job's message (task id = job id) on its queue; given by whoever owns a Celery app.
Sender = Callable[[dict[str, Any]], None]


def _encode(field: str, value: Any) -> str:
    # `state` stays a bare string so that the Lua scripts can compare it; the rest is JSON.
    return str(value) if field == "state" else json.dumps(value)


def _decode_field(field: str, raw: bytes) -> Any:
    return raw.decode() if field == "state" else json.loads(raw)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def attempt_folder(job_id: str, attempt: int) -> str:
    """The store folder of one attempt's artifacts: every write names its attempt."""
    return f"jobs/{job_id}/attempt-{int(attempt)}"


@dataclass(frozen=True)
class Claim:
    """The answer to a worker asking for a job: 'claimed', 'held', 'missing' or a final state."""

    outcome: str
    attempt: int = 0

    @property
    def claimed(self) -> bool:
        """True when this worker now runs the job (as attempt `attempt`)."""
        return self.outcome == "claimed"


@dataclass(frozen=True)
class Signals:
    """What a running attempt learns at a checkpoint."""

    current: bool  # still the job's current attempt, and the job still running
    cancel: bool
    handover: bool


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
        self.persist_within = 10.0  # seconds of retries when writing a final record to the store
        self.deadlines_key = f"{prefix}:deadlines"
        self.persist_key = f"{prefix}:persist"
        self._scripts = {name: client.register_script(getattr(scripts, name)) for name in (
            "CREATE", "PUBLISHED", "DELIVERED", "CLAIM", "RENEW", "PROGRESS", "LOG", "FINISH", "HAND_BACK",
            "REQUEST_HANDOVER", "CANCEL", "REAP", "RECHECK")}

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

    def _final_keys(self, job_id: str) -> list[str]:
        return [self.key(job_id), self.events_key(job_id), self.deadlines_key, self.persist_key]

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=args)

    # creation and publishing ----------------------------------------------------
    def create(self, *, tenant: str, type: str, params: dict[str, Any], queue: str,
               priority: int = 5, resources: dict[str, Any] | None = None,
               idempotency_key: str | None = None, waiting: str | None = None,
               limits: dict[str, int] | None = None, job_id: str | None = None,
               ) -> tuple[dict[str, Any], bool]:
        """Write a queued job in one round trip; returns (record, created); created is False on a replay."""
        job_id = job_id or uuid.uuid4().hex
        record = {
            "id": job_id, "tenant": tenant, "type": type, "state": JobState.QUEUED.value,
            "queue": queue, "priority": priority, "params": params, "resources": resources or {},
            "progress": None, "attempts": 0, "handovers": 0, "worker": None, "created_at": now_iso(),
            "started_at": None, "finished_at": None, "result": None, "error": None,
            "artifacts": [], "cancel_requested": False, "waiting": waiting, "limits": limits,
        }  # fmt: skip
        idem = f"{self.prefix}:t:{tenant}:idem:{idempotency_key}" if idempotency_key else ""
        fields = {k: _encode(k, v) for k, v in record.items()}
        fields["published"] = "false"
        now = time.time()
        created, existing_id = self._run(
            "CREATE", [self.key(job_id), self.index_key(tenant), idem, self.events_key(job_id),
                       self.deadlines_key],
            [job_id, now * 1e6, json.dumps(fields), self.idempotency_ttl, record["created_at"],
             self.grace_ms, self.index_limit, (now - self.job_ttl) * 1e6, self.event_limit],
        )
        if not created:
            return self.get(_text(existing_id), tenant), False
        return record, True

    def publish(self, job_id: str) -> bool:
        """Put a queued job's message on its queue and mark it published; False if it could not be sent.

        A job left unpublished (the broker refused, this process died) is published by the reaper
        once its grace time has passed, so a failure here loses nothing.
        """
        if self.send is None:
            raise RuntimeError("this Jobs has no sender: it cannot publish")
        try:
            record = self.get(job_id)
            if record["state"] != JobState.QUEUED.value:
                return False
            self.send(record)
            self._run("PUBLISHED", [self.key(job_id), self.deadlines_key], [job_id, self.check_ms])
            return True
        except Exception as exc:  # noqa: BLE001 - any broker failure: the reaper publishes it later
            log.warning("could not publish job %s (%s); the reaper will", job_id, type(exc).__name__)
            return False

    def delivered(self, job_id: str, node: str) -> bool:
        """A worker took the job's message: if nobody claims the job soon, the reaper publishes it again."""
        if not is_job_id(job_id):
            return False
        return bool(self._run("DELIVERED", [self.key(job_id), self.deadlines_key],
                              [job_id, node, self.grace_ms]))

    # reading ----------------------------------------------------------------
    @staticmethod
    def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
        out = {_text(k): v for k, v in raw.items()}
        return {k: (_decode_field(k, out[k]) if k in out else None) for k in RECORD_FIELDS}

    def get(self, job_id: str, tenant: str | None = None) -> dict[str, Any]:
        """The record of a job; another tenant's job is NotFound, like a missing one."""
        if not is_job_id(job_id):  # never let a malformed id become a Redis key or a store path
            raise NotFound(f"no job {job_id!r}")
        raw = self.r.hgetall(self.key(job_id))
        record = self._decode(raw) if raw else self._from_store(job_id, tenant)
        if record is None or (tenant is not None and record["tenant"] != tenant):
            raise NotFound(f"no job {job_id!r}")
        return record

    def _from_store(self, job_id: str, tenant: str | None) -> dict[str, Any] | None:
        # Redis holds live state; a finished job's record also lives in the store.
        if self.store is None or tenant is None:
            return None
        try:
            return self.store.tenant(tenant).read_json(f"jobs/{job_id}/record.json")  # type: ignore[no-any-return]
        except (OSError, ValueError, InvalidRequest):
            return None

    def list(self, tenant: str, *, state: str | None = None, type: str | None = None,
             limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, filtered by state and type; returns (items, next cursor or None)."""
        if self.store is not None:  # after Redis lost its data, the listing comes back from the store
            ensure_index(self.r, self.index_key(tenant), self.store.tenant(tenant), "jobs", "record.json",
                         lambda rec: epoch_of(rec.get("created_at")) * 1e6, self.index_limit)
        items: list[dict[str, Any]] = []
        max_score: str = f"({cursor}" if cursor else "+inf"
        batch = max(limit * 2, 50)
        while len(items) < limit:
            page = self.r.zrevrangebyscore(self.index_key(tenant), max_score, "-inf",
                                           start=0, num=batch, withscores=True)
            if not page:
                return items, None
            pipe = self.r.pipeline(transaction=False)
            for job_id, _ in page:
                pipe.hgetall(self.key(_text(job_id)))
            for (job_id, score), raw in zip(page, pipe.execute(), strict=True):
                max_score = f"({score!r}"
                record = self._decode(raw) if raw else self._from_store(_text(job_id), tenant)
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
        outcome, attempt = retry_transient(lambda: self._run("CLAIM", keys, args), what=f"claim {job_id}")
        return Claim(_text(outcome), int(attempt or 0))

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

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked this job to stop."""
        return self.r.hget(self.key(job_id), "cancel_requested") == b"true"

    def finish(self, job_id: str, attempt: int, state: JobState, *, result: Any = None,
               error: dict[str, str] | None = None,
               artifacts: list[dict[str, Any]] | None = None) -> bool:
        """Move a running job to a final state if `attempt` is still current; False if it is not."""
        if state not in TERMINAL:
            raise ValueError(f"{state} is not a final state")
        fields: dict[str, Any] = {"result": result, "error": error,
                                  "progress": self._final_progress(job_id, state)}
        if artifacts is not None:
            fields["artifacts"] = artifacts
        encoded = json.dumps({k: _encode(k, v) for k, v in fields.items()})
        data = json.dumps({"state": state.value, **({"error": error} if error else {})})
        args = [job_id, attempt, state.value, encoded, now_iso(), self.job_ttl, data, self.event_limit]
        outcome = _text(retry_transient(lambda: self._run("FINISH", self._final_keys(job_id), args),
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

    def hand_back(self, job_id: str, attempt: int | None, reason: str, *, worker: str = "") -> str:
        """Give a running job back to its queue (a stopping worker); costs no attempt. Publishes it.

        `attempt` fences the hand-back to one attempt; with None, whatever attempt `worker` (a
        process, already stopped by its stopping worker) holds is handed back.
        """
        args = [job_id, "" if attempt is None else attempt, worker, now_iso(), self.grace_ms,
                reason, self.job_ttl, self.event_limit]
        outcome = _text(retry_transient(lambda: self._run("HAND_BACK", self._final_keys(job_id), args),
                                        what=f"hand back {job_id}"))
        if outcome == "queued" and self.send is not None:
            self.publish(job_id)
        elif outcome == "cancelled":
            self._became_final(job_id)
        return outcome

    def request_handover(self, job_ids: list[str], worker_prefix: str) -> int:
        """Ask the running jobs held by processes of `worker_prefix` to come back at their next checkpoint."""
        asked = 0
        for job_id in job_ids:
            if is_job_id(job_id):
                asked += int(self._run("REQUEST_HANDOVER", [self.key(job_id)], [worker_prefix]))
        return asked

    # recovery (the reaper) ------------------------------------------------------
    def due(self, limit: int = 100) -> list[str]:
        """Jobs whose deadline passed (lapsed leases, unpublished or unclaimed jobs), oldest first."""
        due = self.r.zrangebyscore(self.deadlines_key, "-inf", self._redis_ms(), start=0, num=limit)
        return [_text(j) for j in due]

    def reap(self, job_id: str, max_attempts: int) -> str:
        """The one recovery decision for a job whose deadline passed; publishes or finalizes as decided."""
        args = [job_id, max_attempts, now_iso(), self.grace_ms, self.job_ttl, self.event_limit]
        outcome = _text(self._run("REAP", self._final_keys(job_id), args))
        if outcome == "check":
            queue = json.loads(self.r.hget(self.key(job_id), "queue") or "null")
            empty = queue is None or not sum(self.r.llen(k) for k in queue_keys(queue))
            outcome = _text(self._run("RECHECK", [self.key(job_id), self.deadlines_key],
                                      [job_id, int(empty), self.grace_ms, self.check_ms]))
        if outcome == "publish" and self.send is not None:
            self.publish(job_id)
        elif outcome in FINAL_STATES:
            self._became_final(job_id)
        return outcome

    def unpersisted(self, older_than: float, limit: int = 100) -> list[str]:
        """Final jobs whose record did not reach the store yet (older than `older_than` seconds)."""
        top = self._redis_ms() - older_than * 1000
        return [_text(j) for j in self.r.zrangebyscore(self.persist_key, "-inf", top, start=0, num=limit)]

    def _redis_ms(self) -> int:
        seconds, micros = self.r.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # user side ----------------------------------------------------------------
    def cancel(self, job_id: str, tenant: str) -> dict[str, Any]:
        """Cancel a queued job (or one whose worker is gone) at once, or flag a running one.

        A finished job is a Conflict.
        """
        record = self.get(job_id, tenant)
        outcome = _text(self._run("CANCEL", self._final_keys(job_id),
                                  [job_id, now_iso(), self.job_ttl, self.event_limit]))
        if outcome == "cancelled-now":
            self._became_final(job_id)
        elif outcome != "requested":
            state = record["state"] if outcome == "missing" else outcome
            raise Conflict(f"job {job_id} is already {state}")
        return self.get(job_id, tenant)

    def events(self, job_id: str, after: str = "0-0", block_ms: int | None = None,
               count: int = 500) -> list[tuple[str, dict[str, Any]]]:
        """Events after a stream id, optionally waiting up to block_ms for new ones."""
        if not is_event_id(after):
            raise InvalidRequest(f"invalid event id {after!r}: expected an id such as '1700000000000-0'")
        key = self.events_key(job_id)
        if block_ms is None:
            entries = self.r.xrange(key, min=f"({after}" if after not in ("0", "0-0") else "-", count=count)
        else:
            answer = self.r.xread({key: after}, count=count, block=block_ms)
            entries = answer[0][1] if answer else []
        return [(_text(eid), json.loads(fields[b"e"])) for eid, fields in entries]

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
                if state is None or _text(state) in FINAL_STATES:
                    for eid, event in self.events(job_id, after):
                        yield eid, event
                    yield "", {"type": "end"}
                    return
                yield "", {"type": "keepalive"}
            if deadline is not None and time.monotonic() > deadline:
                return

    # the store, the system of record -------------------------------------------
    def _became_final(self, job_id: str) -> None:
        # The one place where a job is known to have just become final (exactly once per job).
        self.persist(job_id)

    def persist(self, job_id: str) -> bool:
        """Write a final job's record and events to the store and drop the superseded attempts' files.

        Retried through transient store errors; a job that still could not be written stays in the
        persist set, where the reaper finds it again. True when written.
        """
        raw = self.r.hgetall(self.key(job_id))
        if not raw or _text(raw.get(b"state", b"")) not in FINAL_STATES or self.store is None:
            self.r.zrem(self.persist_key, job_id)
            return False
        record = self._decode(raw)
        view = self.store.tenant(record["tenant"])
        try:
            lines = [json.dumps(e) for _, e in self.events(job_id, count=self.event_limit)]
            retry_transient(lambda: view.write_json(f"jobs/{job_id}/record.json", record),
                            within=self.persist_within, what=f"write the record of {job_id}")
            retry_transient(lambda: view.write_bytes(f"jobs/{job_id}/events.jsonl",
                                                     ("\n".join(lines) + "\n").encode()),
                            within=self.persist_within, what=f"write the events of {job_id}")
        except BigModelError as exc:
            log.warning("job %s: record not written to the store yet (%s); the reaper retries", job_id, exc)
            return False
        self._drop_uncommitted(view, job_id, raw.get(b"finished_by"))
        self.r.zrem(self.persist_key, job_id)
        return True

    @staticmethod
    def _drop_uncommitted(view: Store, job_id: str, finished_by: bytes | None) -> None:
        # Only the committing attempt's files are referenced; the others (and the checkpoints of a
        # finished job) are garbage. Best effort: a leftover folder is never read.
        keep = f"attempt-{_text(finished_by)}" if finished_by is not None else None
        try:
            for name in view.listdir(f"jobs/{job_id}"):
                if (ATTEMPT_FOLDER.match(name) and name != keep) or name == "checkpoint":
                    view.delete(f"jobs/{job_id}/{name}")
        except (OSError, BigModelError):
            log.warning("job %s: could not remove superseded attempt files", job_id)
