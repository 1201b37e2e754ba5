"""The shape of a job record in Redis: its fields, how they are encoded, and the answers of the scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from bigmodel.connections import text
from bigmodel.jobs.states import TERMINAL

# What a job record holds (the API shows a subset; record.json in the store holds all of it).
# The hash also holds fields only the scripts use: published, delivered_to, claim_token,
# hard_deadline, handover_requested, finished_by (the attempt that committed, or 'reaper'/'user');
# a child: parent_key, weight; a fanned-out parent: awaiting, pending, children_done, children_failed,
# weight_done, weight_total, wake_grace_ms.
RECORD_FIELDS = (
    "id", "tenant", "type", "state", "queue", "priority", "params", "resources", "progress",
    "attempts", "handovers", "worker", "created_at", "started_at", "finished_at", "result", "error",
    "artifacts", "cancel_requested", "waiting", "limits", "usage", "parent", "children",
)  # fmt: skip
FINAL_STATES = frozenset(s.value for s in TERMINAL)

# Publishes a job's message (task id = job id) on its queue; given by whoever owns a Celery app.
Sender = Callable[[dict[str, Any]], None]


def encode(field: str, value: Any) -> str:
    """A field as the hash stores it: `state` bare (the Lua scripts compare it), the rest JSON."""
    return str(value) if field == "state" else json.dumps(value)


def decode(raw: Mapping[Any, Any]) -> dict[str, Any]:
    """A record from the hash: every record field, None for those it lacks."""
    out = {text(k): v for k, v in raw.items()}
    return {k: ((text(out[k]) if k == "state" else _loads(out[k])) if k in out else None)
            for k in RECORD_FIELDS}


def _loads(raw: bytes | str) -> Any:
    # orjson is several times faster; json reads what it refuses (NaN, as a diverged loss writes it).
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


@dataclass(frozen=True)
class Claim:
    """The answer to a worker asking for a job: 'claimed', 'held', 'missing' or a final state."""

    outcome: str
    attempt: int = 0
    record: dict[str, Any] | None = None  # the claimed job's record, read in the same step

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
