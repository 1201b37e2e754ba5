"""Job routes: submit, read, list, cancel, follow events, download artifacts."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context

from api.requests_util import cursor_arg, event_id_arg, float_arg, int_arg, json_body
from api.services import Services, services, tenant
from bigmodel.errors import InvalidRequest, NotFound
from bigmodel.jobs.longpoll import MAX_WAIT_SECONDS, wait_for
from bigmodel.jobs.lookup import by_prefix
from bigmodel.jobs.records import attempt_folder
from bigmodel.jobs.states import JobState
from bigmodel.jobs.submission import prepare
from bigmodel.jobs.waiting import explain

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

PUBLIC_FIELDS = ("id", "type", "state", "queue", "priority", "params", "resources", "progress",
                 "attempts", "handovers", "worker", "created_at", "started_at", "finished_at", "result",
                 "error", "artifacts", "cancel_requested", "waiting", "usage", "parent",
                 "children")  # fmt: skip


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the API shows it."""
    return {k: record.get(k) for k in PUBLIC_FIELDS}


def shown(s: Services, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as the API shows them, a queued job's `waiting` saying why it waits now."""
    reasons = explain(records, s.recent_workers, s.queues)
    return [{**public(r), "waiting": reasons.get(r["id"])} for r in records]


def submit_job(s: Services, tenant_name: str, body: dict[str, Any],
               idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
    """Validate, record and publish a job; returns (record, created)."""
    job = prepare(s.presence, s.settings, body)
    record, created = s.jobs.create(tenant=tenant_name, idempotency_key=idempotency_key, **job)
    if created:
        # Accepted once recorded: a job the broker refuses now stays unpublished and the reaper
        # publishes it within a lease period, so the answer is 202 either way.
        s.jobs.publish(record["id"], record)
        s.metrics.submitted(job["type"], job["queue"])  # type: ignore[attr-defined]
    return record, created


@bp.post("")
def submit() -> Any:
    """POST /v1/jobs: 202 with the new job, or 200 with the first one on an idempotent replay."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 255 and key.isprintable()):
        raise InvalidRequest("Idempotency-Key must be 1-255 printable characters")
    record, created = submit_job(services(), tenant(), json_body(), key)
    response = jsonify(shown(services(), [record])[0])
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/v1/jobs/{record['id']}"
    return response


@bp.get("")
def list_jobs() -> Any:
    """GET /v1/jobs: newest first, filtered by state and type; ?prefix= finds ids by their start."""
    if request.args.get("prefix") is not None:
        return jobs_by_prefix(request.args["prefix"])
    state = request.args.get("state") or None
    if state and state not in {s.value for s in JobState}:
        raise InvalidRequest(f"unknown state {state!r}")
    items, cursor = services().jobs.list(
        tenant(), state=state, type=request.args.get("type") or None,
        limit=int_arg("limit", 50, 1, 500), cursor=cursor_arg(),
    )
    return jsonify(items=shown(services(), items), next_cursor=cursor)


def jobs_by_prefix(prefix: str) -> Any:
    """The tenant's jobs whose id starts with `prefix` (how the CLI resolves a short id)."""
    s = services()
    records = []
    for job_id in by_prefix(s.jobs, tenant(), prefix, int_arg("limit", 10, 1, 100)):
        try:
            records.append(s.jobs.get(job_id, tenant()))
        except NotFound:  # indexed, but its record has expired
            continue
    return jsonify(items=shown(s, records), next_cursor=None)


@bp.get("/<job_id>")
def get_job(job_id: str) -> Any:
    """GET /v1/jobs/{id}; ?wait=S (S <= 60) answers once the job is finished, or after S seconds."""
    s = services()
    seconds = float_arg("wait", 0.0, 0.0, MAX_WAIT_SECONDS)
    record = wait_for(s.jobs, job_id, tenant(), seconds) if seconds else s.jobs.get(job_id, tenant())
    return jsonify(shown(s, [record])[0])


@bp.post("/<job_id>/cancel")
def cancel(job_id: str) -> Any:
    """POST /v1/jobs/{id}/cancel: 202; a finished job answers 409."""
    s = services()
    record = s.jobs.cancel(job_id, tenant())
    if record["state"] == JobState.CANCELLED.value:
        try:
            s.celery.control.revoke(job_id)  # the worker would skip it anyway; this saves it the trip
        except Exception as exc:  # a courtesy to the workers: the cancel itself is already recorded
            log.debug("could not revoke job %s: %s", job_id, type(exc).__name__)
    response = jsonify(shown(s, [record])[0])
    response.status_code = 202
    return response


def _sse(events: Iterator[tuple[str, dict[str, Any]]], heartbeat: float) -> Iterator[str]:
    yield "retry: 2000\n\n"
    last = time.monotonic()
    for event_id, event in events:
        if event.get("type") == "keepalive":
            if time.monotonic() - last >= heartbeat:
                last = time.monotonic()
                yield ": keepalive\n\n"  # a comment: keeps proxies from closing an idle stream
            continue
        if event.get("type") == "end":
            yield "event: end\ndata: {}\n\n"
            return
        last = time.monotonic()
        yield f"id: {event_id}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
    # Past the stream's maximum duration the generator ends without `end`: EventSource reconnects
    # with Last-Event-ID and resumes where it stopped.


@bp.get("/<job_id>/events")
def events(job_id: str) -> Any:
    """GET /v1/jobs/{id}/events: Server-Sent Events until the job ends; ?follow=0 gives a JSON list."""
    s = services()
    s.jobs.get(job_id, tenant())
    after = event_id_arg()
    if request.args.get("follow", "1") in ("0", "false", "no"):
        return jsonify(items=[{"id": i, **e} for i, e in s.jobs.events(job_id, after, count=10_000)])
    deadline = time.monotonic() + s.settings.sse_max_seconds
    stream = s.jobs.iter_events(job_id, after, poll_ms=1000, deadline=deadline)
    return Response(stream_with_context(_sse(stream, s.settings.sse_heartbeat_seconds)),
                    mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.get("/<job_id>/artifacts/<path:name>")
def artifact(job_id: str, name: str) -> Any:
    """GET /v1/jobs/{id}/artifacts/{name}: the artifact's bytes (from the attempt that committed it)."""
    s = services()
    record = s.jobs.get(job_id, tenant())
    entry = next((a for a in record.get("artifacts") or [] if a["name"] == name), None)
    if entry is None:
        raise NotFound(f"job {job_id} has no artifact {name!r}")
    view = s.store.tenant(tenant())
    folder = attempt_folder(job_id, entry["attempt"]) if entry.get("attempt") else f"jobs/{job_id}"
    rel = f"{folder}/{name}"
    fh = view.open(rel)

    def chunks() -> Iterator[bytes]:
        with fh:
            while block := fh.read(1 << 16):
                yield block

    return Response(chunks(), mimetype="application/octet-stream",
                    headers={"Content-Length": str(view.size(rel)),
                             "Content-Disposition": f'attachment; filename="{name.rsplit("/", 1)[-1]}"'})
