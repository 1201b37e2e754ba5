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


def test_counters_and_histograms_add_up_across_processes(redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    one, two = RedisMetrics(redis.Redis.from_url(redis_server.url)), RedisMetrics(client)
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
