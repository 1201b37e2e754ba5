"""What waits on each queue: a job's place in line and the age of the oldest waiting job (no SCAN).

Kombu's Redis transport keeps one list per queue and priority step (`cpu`, `cpu:1` ... `cpu:9`,
the first taken first); a message is LPUSHed and taken from the right, so the right end of each
list is its oldest message. Every message carries the job id as its `correlation_id`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime

import redis

from bigmodel.jobs.presence import QUEUES, queue_keys

SCAN_LIMIT = 1000  # messages a place-in-line lookup reads at most (inside Redis: nothing is sent back)

# Places in line of some jobs on one queue, read inside Redis from the oldest message on.
# KEYS: the queue's lists in the order workers take them; ARGV: limit, job ids...
# Returns {complete, place_1, ..., place_n}: 1-based places, 0 for a job not among the messages read;
# complete is 1 when every waiting message was read.
POSITIONS = """
local slot = {}
for i = 2, #ARGV do slot[ARGV[i]] = i - 1 end
local out = {1}
for i = 2, #ARGV do out[i] = 0 end
local limit, seen = tonumber(ARGV[1]), 0
for _, key in ipairs(KEYS) do
  local n = redis.call('LLEN', key)
  local take = math.min(n, limit - seen)
  if take < n then out[1] = 0 end
  if take > 0 then
    local items = redis.call('LRANGE', key, -take, -1)
    for j = #items, 1, -1 do
      seen = seen + 1
      local id = string.match(items[j], '"correlation_id": "([^"]+)"')
      if id and slot[id] then out[slot[id] + 1] = seen end
    end
  end
end
return out
"""


def message_job_id(raw: bytes | None) -> str | None:
    """The job id a queued Celery message is for (its correlation id), or None."""
    if not raw:
        return None
    try:
        message = json.loads(raw)
        return str(message["properties"]["correlation_id"])
    except (ValueError, KeyError, TypeError):
        return None


def _age(created_at: bytes | None, now: float) -> float | None:
    if not created_at:
        return None
    try:
        return max(0.0, now - datetime.fromisoformat(json.loads(created_at)).timestamp())
    except (ValueError, TypeError):
        return None


class Queues:
    """Reads the broker's queue lists: places in line and the oldest waiting job's age."""

    def __init__(self, client: redis.Redis, job_key: Callable[[str], str]) -> None:
        self.r = client
        self.job_key = job_key
        self._positions = client.register_script(POSITIONS)

    def positions(self, queue: str, job_ids: Iterable[str],
                  limit: int = SCAN_LIMIT) -> dict[str, int | None]:
        """Each job's place in line (1: next); 0 when a worker already holds it; None: further back."""
        ids = list(job_ids)
        if not ids:
            return {}
        complete, *places = self._positions(keys=queue_keys(queue), args=[limit, *ids])
        return {i: (int(p) if p or complete else None) for i, p in zip(ids, places, strict=True)}

    def oldest_ages(self, queues: tuple[str, ...] = QUEUES) -> dict[str, float]:
        """Seconds the oldest job waiting on each queue has waited since it was submitted (0: empty)."""
        pipe = self.r.pipeline(transaction=False)
        for q in queues:
            for key in queue_keys(q):
                pipe.lindex(key, -1)
        tails = pipe.execute()
        step = len(tails) // len(queues) if queues else 0
        owners = {q: [i for i in map(message_job_id, tails[n * step:(n + 1) * step]) if i]
                  for n, q in enumerate(queues)}
        ids = sorted({i for found in owners.values() for i in found})
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.job_key(job_id), "created_at")
        now = time.time()
        ages = {i: _age(raw, now) for i, raw in zip(ids, pipe.execute(), strict=True)}
        return {q: max((a for i in owners[q] if (a := ages[i]) is not None), default=0.0) for q in queues}
