"""Publishing a job costs one message on its queue and nothing else: no Celery result subscription."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bigmodel.config import Settings
from bigmodel.jobs.presence import queue_keys
from tests.services import RedisServer
from workers.celery_app import job_sender, make_celery

pytestmark = pytest.mark.integration


def test_publishing_a_job_sends_its_message_without_subscribing_to_a_result(tmp_path: Path) -> None:
    if not RedisServer.available():
        pytest.skip("no redis-server binary")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        app = make_celery(Settings().with_overrides(redis_url=server.url))
        send = job_sender(app)
        client = server.client()
        send({"id": uuid.uuid4().hex, "queue": "cpu", "priority": 5, "limits": {}})  # connections open
        client.config_resetstat()
        job_id = uuid.uuid4().hex
        send({"id": job_id, "queue": "cpu", "priority": 5, "limits": {"soft": 10, "hard": 20}})
        stats = client.info("commandstats")
        # The job record is the result: a SUBSCRIBE to celery-task-meta-<id> (and its UNSUBSCRIBE)
        # would be two round trips and a pub/sub connection per submission for nothing.
        assert "cmdstat_subscribe" not in stats, stats
        assert stats["cmdstat_lpush"]["calls"] == 1, stats
        waiting = [m for k in queue_keys("cpu") for m in client.lrange(k, 0, -1)]
        assert sum(job_id.encode() in m for m in waiting) == 1
        app.close()
    finally:
        server.stop()
