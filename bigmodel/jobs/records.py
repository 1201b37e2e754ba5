"""Job records, states, events and leases in Redis: the one place a job's state changes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from bigmodel.clock import now_iso
from bigmodel.errors import Conflict, InvalidRequest, NotFound
from bigmodel.jobs import scripts
from bigmodel.jobs.states import TERMINAL, JobState
from bigmodel.names import is_job_id
from bigmodel.stats import RedisMetrics
from bigmodel.store import Store

JSON_FIELDS = (
    "id", "tenant", "type", "state", "queue", "priority", "params", "resources", "progress",
    "attempts", "worker", "created_at", "started_at", "finished_at", "result", "error",
    "artifacts", "cancel_requested", "waiting", "usage",
)  # fmt: skip


def _encode(field: str, value: Any) -> str:
    # `state` stays a bare string so that the Lua scripts can compare it; the rest is JSON.
    return str(value) if field == "state" else json.dumps(value)


def _decode_field(field: str, raw: bytes) -> Any:
    return raw.decode() if field == "state" else json.loads(raw)


def _event(kind: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "ts": now_iso(), "data": data})


@dataclass(frozen=True)
class Claim:
    """The answer to a worker asking for a job: 'claimed', 'held', 'missing', 'exhausted' or a final state."""

    outcome: str

    @property
    def claimed(self) -> bool:
        """True when this worker now runs the job."""
        return self.outcome == "claimed"


class Jobs:
    """Creates, moves, lists and watches job records; every change is one atomic Redis step."""

    def __init__(self, client: redis.Redis, store: Store | None = None, *, job_ttl: int = 30 * 86400,
                 event_limit: int = 10_000, prefix: str = "bm") -> None:
        self.r = client
        self.store = store
        self.job_ttl = job_ttl
        self.event_limit = event_limit
        self.prefix = prefix
        self.metrics = RedisMetrics(client, prefix)
        self._create = client.register_script(scripts.CREATE)
        self._claim = client.register_script(scripts.CLAIM)
        self._transition = client.register_script(scripts.TRANSITION)
        self._renew = client.register_script(scripts.RENEW)
        self._cancel = client.register_script(scripts.CANCEL)
        self._progress = client.register_script(scripts.PROGRESS)

    # keys -----------------------------------------------------------------
    def key(self, job_id: str) -> str:
        """The hash that holds a job record."""
        return f"{self.prefix}:job:{job_id}"

    def events_key(self, job_id: str) -> str:
        """The stream of a job's events."""
        return f"{self.prefix}:job:{job_id}:events"

    def lease_key(self, job_id: str) -> str:
        """The key whose life is a running job's lease."""
        return f"{self.prefix}:job:{job_id}:lease"

    def index_key(self, tenant: str) -> str:
        """The sorted set of a tenant's job ids by creation time."""
        return f"{self.prefix}:t:{tenant}:jobs"

    # creation ---------------------------------------------------------------
    def create(self, *, tenant: str, type: str, params: dict[str, Any], queue: str,
               priority: int = 5, resources: dict[str, Any] | None = None,
               idempotency_key: str | None = None, waiting: dict[str, Any] | None = None,
               job_id: str | None = None) -> tuple[dict[str, Any], bool]:
        """Write a queued job in one round trip; returns (record, created); created is False on a replay."""
        job_id = job_id or uuid.uuid4().hex
        record = {
            "id": job_id, "tenant": tenant, "type": type, "state": JobState.QUEUED.value,
            "queue": queue, "priority": priority, "params": params, "resources": resources or {},
            "progress": None, "attempts": 0, "worker": None, "created_at": now_iso(),
            "started_at": None, "finished_at": None, "result": None, "error": None,
            "artifacts": [], "cancel_requested": False, "waiting": waiting,
        }  # fmt: skip
        idem = f"{self.prefix}:t:{tenant}:idem:{idempotency_key}" if idempotency_key else ""
        fields = json.dumps({k: _encode(k, v) for k, v in record.items()})
        created, existing_id = self._create(
            keys=[self.key(job_id), self.index_key(tenant), idem, self.events_key(job_id)],
            args=[job_id, time.time() * 1e6, fields, 24 * 3600,
                  _event("state", {"state": "queued"}), self.job_ttl],
        )
        if not created:
            return self.get(existing_id.decode() if isinstance(existing_id, bytes) else existing_id,
                            tenant), False
        return record, True

    # reading ----------------------------------------------------------------
    def _decode(self, raw: dict[bytes, bytes]) -> dict[str, Any]:
        out = {k.decode(): _decode_field(k.decode(), v) for k, v in raw.items()}
        return {k: out.get(k) for k in JSON_FIELDS}

    def get(self, job_id: str, tenant: str | None = None) -> dict[str, Any]:
        """The record of a job; another tenant's job is NotFound, like a missing one."""
        if not is_job_id(job_id):  # never let a malformed id become a Redis key or a store path
            raise NotFound(f"no job {job_id!r}")
        raw = self.r.hgetall(self.key(job_id))
        if raw:
            record = self._decode(raw)
        else:
            record = self._from_store(job_id, tenant)
        if record is None or (tenant is not None and record["tenant"] != tenant):
            raise NotFound(f"no job {job_id!r}")
        return record

    def _from_store(self, job_id: str, tenant: str | None) -> dict[str, Any] | None:
        # Redis holds live state; a finished job's record also lives in the store.
        if self.store is None or tenant is None:
            return None
        try:
            return self.store.tenant(tenant).read_json(f"jobs/{job_id}/record.json")
        except (OSError, ValueError, InvalidRequest):
            return None

    def list(self, tenant: str, *, state: str | None = None, type: str | None = None,
             limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, filtered by state and type; returns (items, next cursor or None)."""
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
                pipe.hgetall(self.key(job_id.decode()))
            for (_, score), raw in zip(page, pipe.execute(), strict=True):
                max_score = f"({repr(score)}"
                if not raw:
                    continue
                record = self._decode(raw)
                if (state and record["state"] != state) or (type and record["type"] != type):
                    continue
                items.append(record)
                if len(items) == limit:
                    return items, repr(score)
            if len(page) < batch:
                return items, None
        return items, None

    # worker side --------------------------------------------------------------
    def claim(self, job_id: str, worker: str, lease_seconds: int, max_attempts: int) -> Claim:
        """Take a queued job (or a running one whose lease lapsed) for this worker."""
        lost = json.dumps({"type": "worker_lost",
                           "message": f"the job was lost by its worker {max_attempts} times; giving up"})
        outcome = self._claim(
            keys=[self.key(job_id), self.events_key(job_id), self.lease_key(job_id)],
            args=[worker, int(lease_seconds * 1000), now_iso(), max_attempts, "", lost],
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else outcome
        if outcome == "exhausted":
            self._persist(job_id)
        return Claim(outcome)

    def renew(self, job_id: str, worker: str, lease_seconds: int) -> bool:
        """Extend the lease; False when this worker no longer holds it."""
        return bool(self._renew(keys=[self.lease_key(job_id)],
                                args=[worker, int(lease_seconds * 1000)]))

    def progress(self, job_id: str, worker: str, progress: dict[str, Any]) -> bool:
        """Record progress and append a progress event (only while this worker runs the job)."""
        return bool(self._progress(
            keys=[self.key(job_id), self.events_key(job_id)],
            args=[worker, json.dumps(progress), _event("progress", progress), self.event_limit],
        ))

    def log(self, job_id: str, message: str, level: str = "info") -> None:
        """Append a log line to the job's events."""
        self.r.xadd(self.events_key(job_id), {"e": _event("log", {"level": level, "message": message})},
                    maxlen=self.event_limit, approximate=True)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked this job to stop."""
        return self.r.hget(self.key(job_id), "cancel_requested") == b"true"

    def finish(self, job_id: str, worker: str, state: JobState, *, result: Any = None,
               error: dict[str, str] | None = None,
               artifacts: list[dict[str, Any]] | None = None, usage: dict[str, Any] | None = None) -> bool:
        """Move a running job held by `worker` to a final state; False if not this worker's."""
        if state not in TERMINAL:
            raise ValueError(f"{state} is not a final state")
        fields: dict[str, Any] = {"finished_at": now_iso(), "result": result, "error": error,
                                  "progress": self._final_progress(job_id, state)}
        if artifacts is not None:
            fields["artifacts"] = artifacts
        if usage is not None:
            fields["usage"] = usage
        data = {"state": state.value, **({"error": error} if error else {})}
        ok = self._move(job_id, ("running",), state, fields, _event("state", data), worker)
        if ok:
            self._persist(job_id)
        return ok

    def _final_progress(self, job_id: str, state: JobState) -> Any:
        raw = self.r.hget(self.key(job_id), "progress")
        progress = json.loads(raw) if raw else None
        if state is JobState.SUCCEEDED:
            progress = {**(progress or {}), "percent": 100.0}
        return progress

    def requeue(self, job_id: str, worker: str, reason: str) -> bool:
        """Hand a running job back to the queue (a stopping worker); attempts grow at the next claim."""
        return self._move(job_id, ("running",), JobState.QUEUED, {"worker": None},
                          _event("state", {"state": "queued", "reason": reason}), worker)

    def fail_queued(self, job_id: str, error: dict[str, str]) -> bool:
        """Fail a job that never started (for example it could not be published)."""
        ok = self._move(job_id, ("queued",), JobState.FAILED,
                        {"finished_at": now_iso(), "error": error},
                        _event("state", {"state": "failed", "error": error}), "")
        if ok:
            self._persist(job_id)
        return ok

    def _move(self, job_id: str, allowed: tuple[str, ...], new: JobState, fields: dict[str, Any],
              event: str, worker: str) -> bool:
        encoded = json.dumps({k: _encode(k, v) for k, v in fields.items()})
        outcome = self._transition(
            keys=[self.key(job_id), self.events_key(job_id), self.lease_key(job_id)],
            args=[",".join(allowed), new.value, encoded, event, worker],
        )
        return outcome in (b"ok", "ok")

    # user side ----------------------------------------------------------------
    def cancel(self, job_id: str, tenant: str) -> dict[str, Any]:
        """Cancel a queued job at once or flag a running one; a finished job is a Conflict."""
        record = self.get(job_id, tenant)
        outcome = self._cancel(
            keys=[self.key(job_id), self.events_key(job_id), self.lease_key(job_id)],
            args=[now_iso(), _event("state", {"state": "cancelled"}),
                  _event("log", {"level": "info", "message": "cancel requested"})],
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else outcome
        if outcome == "cancelled-now":
            self._persist(job_id)
        elif outcome not in ("requested",):
            raise Conflict(f"job {job_id} is already {outcome if outcome != 'missing' else record['state']}")
        return self.get(job_id, tenant)

    def events(self, job_id: str, after: str = "0-0", block_ms: int | None = None,
               count: int = 500) -> list[tuple[str, dict[str, Any]]]:
        """Events after a stream id, optionally waiting up to block_ms for new ones."""
        key = self.events_key(job_id)
        if block_ms is None:
            entries = self.r.xrange(key, min=f"({after}" if after != "0-0" else "-", count=count)
        else:
            answer = self.r.xread({key: after}, count=count, block=block_ms)
            entries = answer[0][1] if answer else []
        return [(eid.decode(), json.loads(fields[b"e"])) for eid, fields in entries]

    def iter_events(self, job_id: str, after: str = "0-0", *, poll_ms: int = 1000,
                    deadline: float | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Follow a job's events until it is finished (and its last events are sent)."""
        while True:
            batch = self.events(job_id, after, block_ms=poll_ms)
            for eid, event in batch:
                after = eid
                yield eid, event
            if not batch:
                state = self.r.hget(self.key(job_id), "state")
                if state is None or state.decode() in {s.value for s in TERMINAL}:
                    for eid, event in self.events(job_id, after):
                        yield eid, event
                    return
                yield "", {"type": "keepalive"}
            if deadline is not None and time.monotonic() > deadline:
                return

    def _persist(self, job_id: str) -> None:
        # The store is the system of record: a finished job's record and events survive Redis.
        record = self._decode(self.r.hgetall(self.key(job_id)))
        self.metrics.job_ended(record)  # every final state passes here: the one place jobs are counted
        self.r.expire(self.key(job_id), self.job_ttl)
        self.r.expire(self.events_key(job_id), self.job_ttl)
        if self.store is None:
            return
        view = self.store.tenant(record["tenant"])
        view.write_json(f"jobs/{job_id}/record.json", record)
        lines = [json.dumps(e) for _, e in self.events(job_id, count=self.event_limit)]
        view.write_bytes(f"jobs/{job_id}/events.jsonl", ("\n".join(lines) + "\n").encode())
