"""Long-polling a job: answer as soon as it is finished, built on a blocking read of its event stream."""

from __future__ import annotations

import json
import time
from typing import Any

from bigmodel.errors import NotFound
from bigmodel.jobs.records import Jobs
from bigmodel.jobs.states import TERMINAL
from bigmodel.names import is_job_id

MAX_WAIT_SECONDS = 60.0
# Each blocking read is shorter than the API's Redis socket timeout, so that a Redis that dies
# during a wait is an error (503) rather than a hang; an event still ends the read at once.
SLICE_SECONDS = 1.0
FINISHED = frozenset(s.value for s in TERMINAL)


def wait_for(jobs: Jobs, job_id: str, tenant: str, seconds: float) -> dict[str, Any]:
    """The job's record once it is finished, or after `seconds` with the record as it is then."""
    if not is_job_id(job_id):  # checked before it becomes part of a key
        raise NotFound(f"no job {job_id!r}")
    key = jobs.events_key(job_id)
    # The newest event id is read before the record: an event that lands between the two reads is
    # then seen by the first XREAD (one extra read), never lost.
    newest: Any = jobs.r.xrevrange(key, count=1)
    after: Any = newest[0][0] if newest else "0-0"
    record = jobs.get(job_id, tenant)
    deadline = time.monotonic() + min(seconds, MAX_WAIT_SECONDS)
    stale = False  # events came that did not end the job: the record is re-read once, at the end
    while record["state"] not in FINISHED:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        block_ms = max(1, int(min(left, SLICE_SECONDS) * 1000))
        answer: Any = jobs.r.xread({key: after}, count=100, block=block_ms)
        if answer:
            entries = answer[0][1]
            after = entries[-1][0]
            if any(_ends(fields) for _, fields in entries):
                return jobs.get(job_id, tenant)
            stale = True
    return jobs.get(job_id, tenant) if stale else record


def _ends(fields: dict[bytes, bytes]) -> bool:
    # A state event to a final state: the only event after which the answer is the final record.
    event = json.loads(fields.get(b"e", b"{}"))
    return event.get("type") == "state" and (event.get("data") or {}).get("state") in FINISHED
