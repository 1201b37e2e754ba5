"""Redis-held metrics: observations from several clients come out of any collector, in Prometheus text."""

from __future__ import annotations

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bigmodel.stats import RedisCollector, RedisMetrics


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def own_db(redis_server) -> str:  # type: ignore[no-untyped-def]
    """A database of its own: the stack's processes count jobs and requests in database 0 meanwhile."""
    return redis_server.url.rsplit("/", 1)[0] + "/7"  # type: ignore[no-any-return]


def test_counters_and_histograms_add_up_across_processes(redis_server) -> None:
    client = redis.Redis.from_url(own_db(redis_server))
    client.flushdb()
    one, two = RedisMetrics(redis.Redis.from_url(own_db(redis_server))), RedisMetrics(client)
    one.inc("bigmodel_jobs_total", {"type": "ping", "state": "succeeded"})
    two.inc("bigmodel_jobs_total", {"type": "ping", "state": "succeeded"})
    two.inc("bigmodel_jobs_total", {"type": "train", "state": "failed"})
    for size in (1, 3, 3, 40):
        one.observe("bigmodel_infer_batch_size", size)
    registry = CollectorRegistry()
    registry.register(RedisCollector(two))
    got = samples(generate_latest(registry).decode())
    assert got[("bigmodel_jobs_total", (("state", "succeeded"), ("type", "ping")))] == 2
    assert got[("bigmodel_jobs_total", (("state", "failed"), ("type", "train")))] == 1
    assert got[("bigmodel_infer_batch_size_count", ())] == 4
    assert got[("bigmodel_infer_batch_size_sum", ())] == 47
    assert got[("bigmodel_infer_batch_size_bucket", (("le", "4.0"),))] == 3  # cumulative
    assert got[("bigmodel_infer_batch_size_bucket", (("le", "+Inf"),))] == 4


def test_a_job_is_counted_once_however_often_its_end_is_recorded(redis_server) -> None:
    client = redis.Redis.from_url(own_db(redis_server))
    client.flushdb()
    metrics = RedisMetrics(client)
    record = {"id": "a" * 32, "type": "train", "state": "succeeded",
              "started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:07.500Z"}
    assert metrics.job_ended(record) is True
    assert metrics.job_ended(record) is False  # a retried persist, a second finisher: no second count
    assert metrics.job_ended({**record, "id": "b" * 32, "state": "cancelled", "started_at": None}) is True
    registry = CollectorRegistry()
    registry.register(RedisCollector(metrics))
    got = samples(generate_latest(registry).decode())
    assert got[("bigmodel_jobs_total", (("state", "succeeded"), ("type", "train")))] == 1
    assert got[("bigmodel_jobs_total", (("state", "cancelled"), ("type", "train")))] == 1
    assert got[("bigmodel_job_duration_seconds_count", (("type", "train"),))] == 1  # never ran: no duration
    assert got[("bigmodel_job_duration_seconds_sum", (("type", "train"),))] == 7.5
    assert got[("bigmodel_job_duration_seconds_bucket", (("le", "5.0"), ("type", "train")))] == 0
    assert got[("bigmodel_job_duration_seconds_bucket", (("le", "15.0"), ("type", "train")))] == 1
