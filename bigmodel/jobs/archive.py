"""The store as the system of record for finished jobs: their record, their events, one set of artifacts."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from bigmodel.errors import BigModelError, InvalidRequest
from bigmodel.retrying import retry_transient
from bigmodel.store import Store

log = logging.getLogger(__name__)
ATTEMPT_FOLDER = re.compile(r"^attempt-([0-9]+)$")


def attempt_folder(job_id: str, attempt: int) -> str:
    """The store folder of one attempt's artifacts: every write names its attempt."""
    return f"jobs/{job_id}/attempt-{int(attempt)}"


class Archive:
    """Writes final job records to the store (retrying transient failures) and reads them back."""

    def __init__(self, store: Store, within: float = 10.0) -> None:
        self.store = store
        self.within = within  # seconds of retries before a write is left for the reaper

    def write(self, record: dict[str, Any], events: list[dict[str, Any]], committed: int | None) -> bool:
        """Write record.json and events.jsonl, then drop every attempt's files but the committed one's.

        False (nothing raised) when the store kept failing: the caller tries again later.
        """
        job_id = record["id"]
        view = self.store.tenant(record["tenant"])
        lines = "".join(json.dumps(e) + "\n" for e in events).encode()
        try:
            retry_transient(lambda: view.write_json(f"jobs/{job_id}/record.json", record),
                            within=self.within, what=f"write the record of {job_id}")
            retry_transient(lambda: view.write_bytes(f"jobs/{job_id}/events.jsonl", lines),
                            within=self.within, what=f"write the events of {job_id}")
        except BigModelError as exc:
            log.warning("job %s: record not written to the store yet (%s); the reaper retries", job_id, exc)
            return False
        self._drop_uncommitted(view, job_id, committed)
        return True

    def read(self, tenant: str, job_id: str) -> dict[str, Any] | None:
        """A finished job's record from the store, or None."""
        try:
            return self.store.tenant(tenant).read_json(f"jobs/{job_id}/record.json")  # type: ignore[no-any-return]
        except (OSError, ValueError, InvalidRequest):
            return None

    @staticmethod
    def _drop_uncommitted(view: Store, job_id: str, committed: int | None) -> None:
        # Only the committing attempt's files are referenced; the others (and the checkpoints of a
        # finished job) are garbage. Best effort: a leftover folder is never read.
        keep = f"attempt-{committed}" if committed is not None else None
        try:
            for name in view.listdir(f"jobs/{job_id}"):
                if (ATTEMPT_FOLDER.match(name) and name != keep) or name == "checkpoint":
                    view.delete(f"jobs/{job_id}/{name}")
        except (OSError, BigModelError):
            log.warning("job %s: could not remove superseded attempt files", job_id)
