"""What a job submission becomes before it is recorded: checked params, bounds, queue and time limits.

One place for the two ways a job is made: a client's POST /v1/jobs and a parent's child jobs.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from bigmodel.config import Settings
from bigmodel.errors import ValidationFailed
from bigmodel.jobs.jobtypes import errors_of, gpu_queue, limits, route, validate_params
from bigmodel.jobs.presence import Presence
from bigmodel.limits import check_params
from bigmodel.schemas import JobSubmission


def prepare(presence: Presence, settings: Settings, body: dict[str, Any],
            loc: tuple[str | int, ...] = ("body",)) -> dict[str, Any]:
    """The fields of a new job record from a submission body (422 naming every problem under `loc`)."""
    try:
        submission = JobSubmission.model_validate(body)
    except ValidationError as exc:
        what = "the request body" if loc == ("body",) else "a child job"
        raise ValidationFailed(f"{what} is invalid", errors=errors_of(exc, loc)) from None
    params = validate_params(submission.type, submission.params)
    check_params(submission.type, params, settings.limits)
    gpus = submission.resources.gpu
    online = presence.serves(gpu_queue(gpus)) if gpus else False
    where = route(submission.type, gpus, gpu_fallback=settings.gpu_fallback, gpu_workers_online=online)
    return {"type": submission.type, "params": params, "queue": where.queue,
            "priority": submission.priority, "resources": submission.resources.model_dump(),
            "waiting": where.waiting, "limits": limits(submission.type, settings)}
