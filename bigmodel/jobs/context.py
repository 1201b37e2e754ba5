"""What a running job sees: its params, its tenant's store, progress reporting and its checkpoints."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from bigmodel.config import Settings
from bigmodel.errors import FannedOut, HandOver, JobCancelled, JobInterrupted, Superseded, ValidationFailed
from bigmodel.jobs.presence import Presence
from bigmodel.jobs.records import Jobs, attempt_folder
from bigmodel.names import check_segment
from bigmodel.retrying import is_transient
from bigmodel.store import Store

log = logging.getLogger(__name__)
MAX_CHILDREN = 1024  # child jobs of one fan-out


def child_id(parent: str, index: int) -> str:
    """The id of a parent's child number `index`: the same on every run of the parent."""
    return hashlib.sha256(f"{parent}/{index}".encode()).hexdigest()[:32]


class JobContext:
    """The handle a runner gets: report progress, stop at checkpoints, write artifacts of its attempt."""

    def __init__(self, job: dict[str, Any], jobs: Jobs, store: Store, worker: str,
                 settings: Settings, attempt: int = 1) -> None:
        self.job = job
        self.job_id: str = job["id"]
        self.tenant: str = job["tenant"]
        self.jobs = jobs
        self.store_root = store
        self.store = store.tenant(self.tenant)
        self.worker = worker
        self.settings = settings
        self.attempt = attempt  # the fencing token: every write of this run names it
        self.artifacts: list[dict[str, Any]] = []
        self.current = True  # False once another attempt (or a final state) has replaced this one
        self._stage_prefix: str | None = None
        self._last_check = 0.0
        self._children: list[dict[str, Any]] | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The validated params of the job."""
        return self.job["params"]  # type: ignore[no-any-return]

    # fan-out ------------------------------------------------------------------
    @property
    def children(self) -> list[dict[str, Any]] | None:
        """None until this job fanned out; on its run after that, its children's final records in order."""
        ids = self.job.get("children")
        if ids is None:
            return None
        if self._children is None:
            by_id = {r["id"]: r for r in self.jobs.records(ids, self.tenant)}
            self._children = [by_id[c] for c in ids if c in by_id]
        return self._children

    def fan_out(self, children: list[dict[str, Any]], weights: list[int] | None = None) -> NoReturn:
        """Hand the work to child jobs and let this worker process go; the job runs again when they ended.

        Each child is {"type", "params", "resources" (optional), "priority" (optional)}, checked like a
        submission. Child ids derive from this job's id and the index, so a re-run of this job before
        it fanned out (a lost worker) finds the same children instead of making new ones.
        """
        from bigmodel.jobs.submission import prepare  # the submission rules: one place for both paths

        if not 1 <= len(children) <= MAX_CHILDREN:
            raise ValidationFailed(f"a job fans out to 1 to {MAX_CHILDREN} children, not {len(children)}")
        weights = weights or [1] * len(children)
        presence = Presence(self.jobs.r)
        ids = [child_id(self.job_id, i) for i in range(len(children))]
        for i, (spec, weight) in enumerate(zip(children, weights, strict=True)):
            job = prepare(presence, self.settings, spec, loc=("children", i))
            self.jobs.create(tenant=self.tenant, job_id=ids[i], parent=self.job_id, weight=int(weight), **job)
        outcome = self.jobs.fan_out(self.job_id, self.attempt, ids, int(sum(weights)))
        if outcome == "superseded":
            self.current = False
            raise Superseded("another attempt has taken this job over; this one commits nothing")
        for child in ids:
            self.jobs.publish(child)
        raise FannedOut(f"waiting for {len(ids)} child jobs")

    def child_artifact(self, child: dict[str, Any], name: str) -> str:
        """The path of a child's artifact in this tenant's store view (open it with `self.store`)."""
        entry = next((a for a in child.get("artifacts") or [] if a["name"] == name), None)
        if entry is None:
            raise FileNotFoundError(f"child job {child['id']} has no artifact {name!r}")
        return f"{attempt_folder(child['id'], entry['attempt'])}/{name}"

    @property
    def checkpoint_dir(self) -> str:
        """The store folder for checkpoints: the same for every attempt, so a later one resumes."""
        return f"jobs/{self.job_id}/checkpoint"

    def progress(self, stage: str, current: int | None = None, total: int | None = None,
                 metrics: dict[str, Any] | None = None, percent: float | None = None) -> None:
        """Report where the job is; feeds the record's `progress` and the event stream (best effort)."""
        if percent is None and current is not None and total:
            percent = round(100.0 * current / total, 2)
        name = f"{self._stage_prefix}.{stage}" if self._stage_prefix else stage
        payload = {"stage": name, "current": current, "total": total, "percent": percent,
                   "metrics": metrics or {}}
        try:
            if not self.jobs.progress(self.job_id, self.attempt, payload):
                self.current = False
        except Exception as exc:
            if not is_transient(exc):
                raise
            # A Redis blip costs a progress line, never the job.
            log.warning("job %s: progress not recorded (%s)", self.job_id, type(exc).__name__)

    def log(self, message: str, level: str = "info") -> None:
        """Append a line to the job's log events (best effort)."""
        try:
            self.jobs.log(self.job_id, message, level, attempt=self.attempt)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("job %s: log line not recorded (%s)", self.job_id, type(exc).__name__)

    def check_cancelled(self, min_interval: float = 0.2) -> None:
        """A checkpoint: raise if the job must stop here (cancelled, handed over, or superseded)."""
        if not self.current:
            raise Superseded("another attempt has taken this job over; this one commits nothing")
        now = time.monotonic()
        if now - self._last_check < min_interval:
            return
        self._last_check = now
        try:
            signals = self.jobs.signals(self.job_id, self.attempt)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return  # Redis does not answer: carry on; the state script decides at the end
        if not signals.current:
            self.current = False
            raise Superseded("another attempt has taken this job over; this one commits nothing")
        if signals.cancel:
            raise JobCancelled("the job was cancelled")
        if signals.handover:
            raise HandOver(f"worker {self.worker} is stopping; the job goes back to its queue")

    def check_current(self) -> None:
        """Raise Superseded if another attempt has replaced this one (a fencing check, nothing else)."""
        try:
            current = self.jobs.signals(self.job_id, self.attempt).current
        except Exception as exc:
            if not is_transient(exc):
                raise
            current = self.current
        if not current:
            self.current = False
            raise Superseded("another attempt has taken this job over; this one commits nothing")

    def ensure_current(self) -> None:
        """A fencing check right before a write that commits something (a model version)."""
        self.check_cancelled(min_interval=0)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run a pipeline stage: progress is prefixed with it and a failure names it."""
        self._stage_prefix = name
        self.log(f"stage {name} started")
        try:
            yield
        except JobInterrupted:
            raise
        except Exception as exc:
            exc.add_note(f"stage: {name}")
            exc.bigmodel_stage = name  # type: ignore[attr-defined]
            raise
        finally:
            self._stage_prefix = None
        self.log(f"stage {name} finished")

    def artifact_rel(self, name: str) -> str:
        """The store path of an artifact of this attempt."""
        for part in name.split("/"):
            check_segment(part, "artifact name")
        return f"{attempt_folder(self.job_id, self.attempt)}/{name}"

    def add_artifact(self, name: str, data: bytes) -> dict[str, Any]:
        """Write an artifact of this attempt to the store and list it in the record."""
        rel = self.artifact_rel(name)
        size = self.store.write_bytes(rel, data)
        # The API path, not the store's: the record is public and store paths are the operator's.
        entry = {"name": name, "uri": f"/v1/jobs/{self.job_id}/artifacts/{name}", "size_bytes": size,
                 "attempt": self.attempt}
        self.artifacts = [a for a in self.artifacts if a["name"] != name] + [entry]
        return entry

    def add_artifact_file(self, name: str, path: str | Path) -> dict[str, Any]:
        """Copy a local file into this attempt's artifacts."""
        return self.add_artifact(name, Path(path).read_bytes())

    def discard(self) -> None:
        """Remove this attempt's files: it was superseded or handed over and commits nothing."""
        try:
            self.store.delete(attempt_folder(self.job_id, self.attempt))
        except Exception:  # noqa: BLE001 - best effort: an unreferenced folder is never read
            log.warning("job %s: could not remove the files of attempt %d", self.job_id, self.attempt)
