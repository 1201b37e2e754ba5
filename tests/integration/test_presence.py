"""Worker presence: heartbeats in one sorted set; a lapsed beat drops the worker from every reader."""

from __future__ import annotations

import time

import redis

from bigmodel.jobs.presence import Presence


def test_beats_lapse_and_leave(redis_server) -> None:
    # A database of its own: the stack's API processes write their metrics into database 0 at any time.
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/6")
    client.flushdb()
    presence = Presence(client)
    presence.beat("cpu1@h", {"pool": "cpu", "queues": ["cpu"], "concurrency": 2}, ttl=30)
    presence.beat("gpu0@h", {"pool": "gpu", "queues": ["gpu"], "concurrency": 1}, ttl=0.3)
    assert presence.serves("gpu") and presence.pools()["cpu"]["concurrency"] == 2
    time.sleep(0.4)
    assert not presence.serves("gpu") and presence.lapsed() == ["gpu0@h"]
    assert [w["name"] for w in presence.workers()] == ["cpu1@h"]
    presence.leave("cpu1@h")
    assert presence.workers() == [] and presence.pools() == {}
    # Reading presence never scans: the keyspace holds only the two presence keys.
    assert sorted(client.keys("*")) == [b"bm:workers", b"bm:workers:info"]
