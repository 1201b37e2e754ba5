"""What a running job sees: its params, its tenant's store, progress reporting and the cancel flag."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bigmodel.config import Settings
from bigmodel.errors import JobCancelled
from bigmodel.jobs.records import Jobs
from bigmodel.names import check_segment
from bigmodel.store import Store


class JobContext:
    """The handle a runner gets: report progress, check for cancellation, write artifacts."""

    def __init__(self, job: dict[str, Any], jobs: Jobs, store: Store, worker: str,
                 settings: Settings) -> None:
        self.job = job
        self.job_id: str = job["id"]
        self.tenant: str = job["tenant"]
        self.jobs = jobs
        self.store_root = store
        self.store = store.tenant(self.tenant)
        self.worker = worker
        self.settings = settings
        self.artifacts: list[dict[str, Any]] = []
        self.lease_lost = False
        self._stage_prefix: str | None = None
        self._last_check = 0.0

    @property
    def params(self) -> dict[str, Any]:
        """The validated params of the job."""
        return self.job["params"]  # type: ignore[no-any-return]

    def progress(self, stage: str, current: int | None = None, total: int | None = None,
                 metrics: dict[str, Any] | None = None, percent: float | None = None) -> None:
        """Report where the job is; feeds the record's `progress` and the event stream."""
        if percent is None and current is not None and total:
            percent = round(100.0 * current / total, 2)
        name = f"{self._stage_prefix}.{stage}" if self._stage_prefix else stage
        payload = {"stage": name, "current": current, "total": total, "percent": percent,
                   "metrics": metrics or {}}
        self.jobs.progress(self.job_id, self.worker, payload)

    def log(self, message: str, level: str = "info") -> None:
        """Append a line to the job's log events."""
        self.jobs.log(self.job_id, message, level)

    def check_cancelled(self, min_interval: float = 0.2) -> None:
        """Raise JobCancelled if the user asked this job to stop (a checkpoint between epochs/batches)."""
        now = time.monotonic()
        if now - self._last_check < min_interval:
            return
        self._last_check = now
        if self.lease_lost:
            raise JobCancelled("this worker lost the job's lease; another worker has taken it over")
        if self.jobs.cancel_requested(self.job_id):
            raise JobCancelled("the job was cancelled")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run a pipeline stage: progress is prefixed with it and a failure names it."""
        self._stage_prefix = name
        self.log(f"stage {name} started")
        try:
            yield
        except JobCancelled:
            raise
        except Exception as exc:
            exc.add_note(f"stage: {name}")
            exc.bigmodel_stage = name
            raise
        finally:
            self._stage_prefix = None
        self.log(f"stage {name} finished")

    def artifact_rel(self, name: str) -> str:
        """The store path of an artifact of this job."""
        for part in name.split("/"):
            check_segment(part, "artifact name")
        return f"jobs/{self.job_id}/{name}"

    def add_artifact(self, name: str, data: bytes) -> dict[str, Any]:
        """Write an artifact of this job to the store and list it in the record."""
        rel = self.artifact_rel(name)
        size = self.store.write_bytes(rel, data)
        # The API path, not the store's: the record is public and store paths are the operator's.
        entry = {"name": name, "uri": f"/v1/jobs/{self.job_id}/artifacts/{name}", "size_bytes": size}
        self.artifacts = [a for a in self.artifacts if a["name"] != name] + [entry]
        return entry

    def add_artifact_file(self, name: str, path: str | Path) -> dict[str, Any]:
        """Copy a local file into this job's artifacts."""
        return self.add_artifact(name, Path(path).read_bytes())
