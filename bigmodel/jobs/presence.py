"""Which workers are online (heartbeats in Redis) and how deep each queue is."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from bigmodel.connections import text

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
    """Worker heartbeats in one sorted set (score: when the beat lapses) plus a hash of worker info.

    Reading presence is two commands whatever the size of the keyspace: no SCAN on any request path.
    """

    def __init__(self, client: redis.Redis, prefix: str = "bm") -> None:
        self.r = client
        self.beats_key = f"{prefix}:workers"
        self.info_key = f"{prefix}:workers:info"

    def beat(self, name: str, info: dict[str, Any], ttl: float) -> None:
        """Say that a worker is alive for the next `ttl` seconds (and forget workers long gone)."""
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(self.beats_key, {name: now + ttl})
        pipe.hset(self.info_key, name, json.dumps({**info, "name": name, "seen": now}))
        pipe.execute()
        gone = self.r.zrangebyscore(self.beats_key, "-inf", now - 3600)
        if gone:
            self.r.zrem(self.beats_key, *gone)
            self.r.hdel(self.info_key, *gone)

    def leave(self, name: str) -> None:
        """Forget a worker at once (clean shutdown)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zrem(self.beats_key, name)
        pipe.hdel(self.info_key, name)
        pipe.execute()

    def alive(self) -> list[str]:
        """Names of the workers whose heartbeat has not lapsed."""
        return [text(n) for n in self.r.zrangebyscore(self.beats_key, time.time(), "+inf")]

    def lapsed(self) -> list[str]:
        """Names of workers whose heartbeat lapsed (and that did not leave cleanly)."""
        return [text(n) for n in self.r.zrangebyscore(self.beats_key, "-inf", time.time())]

    def workers(self) -> list[dict[str, Any]]:
        """Every worker whose heartbeat has not lapsed, with the info it published."""
        names = self.alive()
        if not names:
            return []
        return [json.loads(v) for v in self.r.hmget(self.info_key, names) if v]

    def pools(self) -> dict[str, dict[str, Any]]:
        """Online pools by name, with their workers, total concurrency, queues and Keras backends."""
        pools: dict[str, dict[str, Any]] = {}
        for w in self.workers():
            pool = pools.setdefault(w.get("pool", "?"), {"workers": [], "concurrency": 0,
                                                         "queues": [], "backends": []})
            pool["workers"].append(w["name"])
            pool["concurrency"] += int(w.get("concurrency", 1))
            pool["queues"] = sorted(set(pool["queues"]) | set(w.get("queues", [])))
            # The Keras backends the pool's workers run (workers older than the setting ran TensorFlow).
            pool["backends"] = sorted(set(pool["backends"]) | {w.get("backend", "tensorflow")})
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
