"""Job states. The moves between them are the Lua scripts in jobs/scripts.py, not a table here."""

from __future__ import annotations

from enum import Enum


class JobState(str, Enum):
    """Where a job is in its life; it only moves forward (running -> queued only on hand-over or recovery)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the three terminal states."""
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
