"""Which workers are online (heartbeats in Redis) and how deep each queue is."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

QUEUES = ("cpu", "gpu", "infer")
PRIORITY_STEPS = tuple(range(10))
PRIORITY_SEP = ":"


def priority_to_broker(priority: int) -> int:
    """Our priority (9 highest) as the Redis transport's (0 highest)."""
    return 9 - max(0, min(9, priority))


def queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps for one queue with priority steps."""
    return [queue] + [f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS if p]


class Presence:
    """Worker heartbeats (a key with a TTL per worker) and queue depths."""

    def __init__(self, client: redis.Redis, prefix: str = "bm") -> None:
        self.r = client
        self.prefix = prefix

    def beat(self, name: str, info: dict[str, Any], ttl: int) -> None:
        """Say that a worker is alive for the next `ttl` seconds."""
        self.r.set(f"{self.prefix}:worker:{name}", json.dumps({**info, "name": name, "seen": time.time()}),
                   ex=ttl)

    def leave(self, name: str) -> None:
        """Forget a worker at once (clean shutdown)."""
        self.r.delete(f"{self.prefix}:worker:{name}")

    def workers(self) -> list[dict[str, Any]]:
        """Every worker whose heartbeat has not lapsed."""
        keys = sorted(self.r.scan_iter(match=f"{self.prefix}:worker:*", count=500))
        if not keys:
            return []
        return [json.loads(v) for v in self.r.mget(keys) if v]

    def pools(self) -> dict[str, dict[str, Any]]:
        """Online pools by name, with their workers and total concurrency."""
        pools: dict[str, dict[str, Any]] = {}
        for w in self.workers():
            pool = pools.setdefault(w.get("pool", "?"), {"workers": [], "concurrency": 0,
                                                         "queues": []})
            pool["workers"].append(w["name"])
            pool["concurrency"] += int(w.get("concurrency", 1))
            pool["queues"] = sorted(set(pool["queues"]) | set(w.get("queues", [])))
        return pools

    def serves(self, queue: str) -> bool:
        """Whether any online worker consumes this queue."""
        return any(queue in w.get("queues", []) for w in self.workers())

    def depths(self, queues: tuple[str, ...] = QUEUES) -> dict[str, int]:
        """Messages waiting in each queue (all priority levels)."""
        pipe = self.r.pipeline(transaction=False)
        for q in queues:
            for key in queue_keys(q):
                pipe.llen(key)
        counts = pipe.execute()
        step = len(PRIORITY_STEPS)
        return {q: sum(counts[i * step:(i + 1) * step]) for i, q in enumerate(queues)}
