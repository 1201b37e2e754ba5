"""Why a queued job waits: the one shape every cause fills, computed from presence and the queues."""

from __future__ import annotations

import time
from collections.abc import Iterable
from enum import Enum
from typing import Any

from bigmodel.jobs.presence import Presence
from bigmodel.jobs.queues import SCAN_LIMIT, Queues


class Reason(str, Enum):
    """What a queued job waits for."""

    QUEUE_POSITION = "queue_position"  # jobs ahead of it, or a free worker process
    NO_WORKER = "no_worker"  # nobody consumes its queue
    GPU_UNAVAILABLE = "gpu_unavailable"  # it asks for a GPU and no GPU worker is online
    TENANT_QUOTA = "tenant_quota"  # its tenant runs as many jobs as it may (filled by the quota check)


def waiting(reason: Reason, message: str, *, position: int | None = None,
            workers_online: int = 0) -> dict[str, Any]:
    """The `waiting` field of a job record: {reason, position, workers_online, message}."""
    return {"reason": reason.value, "position": position, "workers_online": workers_online,
            "message": message}


class RecentWorkers:
    """The online workers as read at most `ttl` seconds ago: presence changes at heartbeat pace, so
    the hot paths (submit, listings, the dashboard) need not read it on every request."""

    def __init__(self, presence: Presence, ttl: float = 1.0) -> None:
        self.presence = presence
        self.ttl = ttl
        self._read: tuple[float, list[dict[str, Any]]] = (-ttl, [])

    def __call__(self) -> list[dict[str, Any]]:
        at, workers = self._read
        if time.monotonic() - at >= self.ttl:
            workers = self.presence.workers()
            self._read = (time.monotonic(), workers)
        return workers


def no_gpu_worker(gpus: int = 1) -> dict[str, Any]:
    """Why a job that asks for `gpus` GPUs waits when no worker process with that many is online."""
    if gpus > 1:
        return waiting(Reason.GPU_UNAVAILABLE, f"no worker with {gpus} GPU(s) per process is online; the "
                       f"job starts when one joins (`bigmodel worker --pool gpu --gpus-per-process {gpus}`)")
    return waiting(Reason.GPU_UNAVAILABLE, "no GPU worker is online; the job starts when one joins "
                   "(`bigmodel worker --pool gpu`), or set BIGMODEL_GPU_FALLBACK=cpu to run such jobs on CPU")


def _in_line(queue: str, position: int | None, online: int) -> dict[str, Any]:
    workers = f"{online} worker{'s' if online != 1 else ''} online"
    if position is None:
        text = f"more than {SCAN_LIMIT} jobs are ahead of it on the {queue} queue ({workers})"
    elif position == 0:
        text = f"a {queue} worker has taken it and starts it when one of its processes is free"
    elif position == 1:
        text = f"next in line on the {queue} queue ({workers})"
    else:
        text = f"{position - 1} jobs are ahead of it on the {queue} queue ({workers})"
    return waiting(Reason.QUEUE_POSITION, text, position=position, workers_online=online)


def explain(records: Iterable[dict[str, Any]], recent: RecentWorkers,
            queues: Queues) -> dict[str, dict[str, Any]]:
    """The `waiting` of each queued job among `records`, by job id (one Redis call per queue)."""
    queued = [r for r in records if r.get("state") == "queued"]
    if not queued:
        return {}
    workers = recent()
    online = {q: sum(q in w.get("queues", []) for w in workers) for q in {r["queue"] for r in queued}}
    out: dict[str, dict[str, Any]] = {}
    in_line: dict[str, list[str]] = {}
    for r in queued:
        kept = r.get("waiting")
        if isinstance(kept, dict) and kept.get("reason") == Reason.TENANT_QUOTA.value:
            out[r["id"]] = kept  # a cause decided elsewhere: shown as it was recorded
        elif online[r["queue"]] == 0 and (r.get("resources") or {}).get("gpu"):
            out[r["id"]] = no_gpu_worker(int(r["resources"]["gpu"]))
        elif online[r["queue"]] == 0:
            out[r["id"]] = waiting(
                Reason.NO_WORKER, f"no worker is online for the {r['queue']} queue; the job starts when "
                f"one joins (`bigmodel worker --pool {r['queue']}`)")
        else:
            in_line.setdefault(r["queue"], []).append(r["id"])
    for queue, ids in in_line.items():
        for job_id, place in queues.positions(queue, ids).items():
            out[job_id] = _in_line(queue, place, online[queue])
    return out
