"""`waiting` says why a queued job waits, from presence and the broker's own queue lists (real Redis, real
Celery messages, no worker consuming them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from bigmodel.config import Settings
from bigmodel.jobs.presence import Presence, priority_to_broker
from bigmodel.jobs.queues import Queues
from bigmodel.jobs.records import Jobs
from bigmodel.jobs.waiting import Reason, RecentWorkers, explain, waiting
from workers.celery_app import RUN_JOB, make_celery

pytestmark = pytest.mark.integration


@pytest.fixture
def world(redis_server):  # type: ignore[no-untyped-def]
    url = redis_server.url.rsplit("/", 1)[0] + "/2"  # a database of its own: flushed freely
    client = redis.Redis.from_url(url)
    client.flushdb()
    celery = make_celery(Settings(redis_url=url))
    jobs, presence = Jobs(client), Presence(client)

    def queued(queue: str = "cpu", priority: int = 5, gpu: int = 0, publish: bool = True) -> dict:
        record, _ = jobs.create(tenant="t", type="ping", params={}, queue=queue, priority=priority,
                                resources={"gpu": gpu})
        if publish:
            celery.send_task(RUN_JOB, args=[record["id"]], task_id=record["id"], queue=queue,
                             priority=priority_to_broker(priority))
        return record

    yield presence, Queues(client, jobs.key), queued
    client.flushdb()
    celery.close()


def why(records, presence, queues) -> dict:  # type: ignore[no-untyped-def]
    return explain(records, RecentWorkers(presence, ttl=0), queues)


def test_no_worker_and_no_gpu_worker(world) -> None:  # type: ignore[no-untyped-def]
    presence, queues, queued = world
    cpu_job, gpu_job = queued(), queued("gpu", gpu=1)
    got = why([cpu_job, gpu_job], presence, queues)
    assert got[cpu_job["id"]]["reason"] == "no_worker" and got[cpu_job["id"]]["workers_online"] == 0
    assert "no worker is online for the cpu queue" in got[cpu_job["id"]]["message"]
    assert got[gpu_job["id"]]["reason"] == "gpu_unavailable"
    assert "no GPU worker is online" in got[gpu_job["id"]]["message"]
    assert set(got[gpu_job["id"]]) == {"reason", "position", "workers_online", "message"}


def test_places_in_line_follow_priority_then_arrival(world) -> None:  # type: ignore[no-untyped-def]
    presence, queues, queued = world
    presence.beat("cpu-1@h", {"pool": "cpu", "queues": ["cpu"], "concurrency": 2}, ttl=30)
    first, second = queued(priority=5), queued(priority=5)
    urgent = queued(priority=9)
    held = queued(publish=False)  # recorded but not in the list: a worker has taken its message
    got = why([first, second, urgent, held], presence, queues)
    places = {name: got[r["id"]]["position"] for name, r in
              (("first", first), ("second", second), ("urgent", urgent), ("held", held))}
    assert places == {"urgent": 1, "first": 2, "second": 3, "held": 0}
    assert got[urgent["id"]]["message"].startswith("next in line on the cpu queue (1 worker online)")
    assert got[second["id"]]["message"].startswith("2 jobs are ahead of it")
    assert got[held["id"]]["message"].startswith("a cpu worker has taken it")
    assert all(w["reason"] == "queue_position" and w["workers_online"] == 1 for w in got.values())


def test_a_deep_queue_is_read_only_up_to_the_limit(world) -> None:  # type: ignore[no-untyped-def]
    presence, queues, queued = world
    records = [queued() for _ in range(4)]
    places = queues.positions("cpu", [r["id"] for r in records], limit=2)
    assert [places[r["id"]] for r in records] == [1, 2, None, None]  # further back than what was read


def test_a_quota_reason_recorded_elsewhere_is_shown_as_it_is(world) -> None:  # type: ignore[no-untyped-def]
    presence, queues, queued = world
    record = queued()
    record["waiting"] = waiting(Reason.TENANT_QUOTA, "your tenant runs 4 jobs, its limit", workers_online=2)
    assert why([record], presence, queues)[record["id"]]["reason"] == "tenant_quota"


def test_the_oldest_waiting_age_per_queue(world, redis_server) -> None:  # type: ignore[no-untyped-def]
    presence, queues, queued = world
    assert queues.oldest_ages() == {"cpu": 0.0, "gpu": 0.0, "infer": 0.0}
    old = queued(priority=1)  # at the back of the line, yet the one that has waited longest
    queued(priority=9)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    queues.r.hset(queues.job_key(old["id"]), "created_at", json.dumps(an_hour_ago.isoformat()))
    ages = queues.oldest_ages()
    assert 3600 <= ages["cpu"] < 3700 and ages["gpu"] == 0.0
