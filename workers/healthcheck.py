"""Container healthcheck of a worker: healthy while a worker of this host and pool has a live heartbeat."""

from __future__ import annotations

import argparse
import socket
import sys

import redis

from bigmodel.config import Settings
from bigmodel.connections import redis_client
from bigmodel.jobs.presence import Presence


def healthy(presence: Presence, host: str, pool: str) -> bool:
    """Whether a worker on `host` serving `pool` beats in Redis (its heartbeat has not lapsed)."""
    return any(w.get("host") == host and w.get("pool") == pool for w in presence.workers())


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when healthy, 1 when not (Redis unreachable included)."""
    parser = argparse.ArgumentParser(prog="python -m workers.healthcheck", description=__doc__)
    parser.add_argument("--pool", required=True, help="the pool this container runs (cpu, gpu, infer)")
    args = parser.parse_args(argv)
    try:
        presence = Presence(redis_client(Settings.from_env(), timeout=5))
        return 0 if healthy(presence, socket.gethostname(), args.pool) else 1
    except redis.exceptions.RedisError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
