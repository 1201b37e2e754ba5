"""Metrics that many processes observe and any API process exposes: counters and histograms in Redis.

Worker and serving processes come and go and gunicorn runs several API processes, so in-process
Prometheus metrics would each see a slice. Here every observation is one pipelined HINCRBY into a
hash per metric family, and `RedisCollector` turns the hashes into Prometheus families at scrape
time: any API process answers with the whole system's numbers.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class Family:
    """A metric family: its Prometheus name, help, kind, label names and (for histograms) buckets."""

    name: str
    help: str
    kind: str  # "counter" | "histogram"
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


# Every family kept in Redis, in one table (Prometheus naming: bigmodel_<noun>_<unit>[_total]).
FAMILIES: Mapping[str, Family] = {f.name: f for f in (
    Family("bigmodel_jobs_total", "Jobs that reached a final state", "counter", ("type", "state")),
    Family("bigmodel_job_duration_seconds", "Running time of finished jobs", "histogram", ("type",),
           DURATION_BUCKETS),
    Family("bigmodel_jobs_submitted_total", "Jobs accepted by the API", "counter", ("type", "queue")),
    Family("bigmodel_http_requests_total", "HTTP requests answered by the API", "counter",
           ("method", "status")),
    Family("bigmodel_infer_requests_total", "Online inference requests answered by serving processes",
           "counter", ("outcome",)),
    Family("bigmodel_infer_latency_seconds", "Serving-side time of an inference request (queue + compute)",
           "histogram", (), LATENCY_BUCKETS),
    Family("bigmodel_infer_batch_size", "Requests gathered into one forward pass", "histogram", (),
           SIZE_BUCKETS),
)}  # fmt: skip


def _label_key(family: Family, labels: Mapping[str, str]) -> str:
    if set(labels) != set(family.labels):
        raise ValueError(f"{family.name} takes labels {family.labels}, got {sorted(labels)}")
    # Label values come from our own code (job types, states, outcomes), never from users.
    return ",".join(f"{k}={str(labels[k]).replace(',', '_').replace('|', '_')}" for k in family.labels)


# Apply increments only the first time a marker is set: a job is counted once however often its
# end is recorded. KEYS: marker, then the hash of each op; ARGV: marker ttl, then (kind, field, amount).
ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
for i = 2, #KEYS do
  local a = 2 + (i - 2) * 3
  if ARGV[a] == 'f' then redis.call('HINCRBYFLOAT', KEYS[i], ARGV[a + 1], ARGV[a + 2])
  else redis.call('HINCRBY', KEYS[i], ARGV[a + 1], tonumber(ARGV[a + 2])) end
end
return 1
"""


class _Ops:
    """Collects hash increments (a stand-in for a pipeline) to send in one script."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, str, str, float]] = []

    def hincrby(self, key: str, field: str, amount: int) -> None:
        self.ops.append((key, "i", field, amount))

    def hincrbyfloat(self, key: str, field: str, amount: float) -> None:
        self.ops.append((key, "f", field, amount))


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except ValueError:
        return None


class RedisMetrics:
    """Record observations into Redis hashes (one per family)."""

    def __init__(self, client: redis.Redis, prefix: str = "bm") -> None:
        self.r = client
        self.prefix = prefix
        self._once = client.register_script(ONCE)

    def job_ended(self, record: Mapping[str, Any], marker_ttl: int = 7 * 86400) -> bool:
        """Count a job that reached its final state, once per job: by type and state, and its running
        time when it ran. Returns False when this job was already counted."""
        ops = _Ops()
        self.inc("bigmodel_jobs_total", {"type": record["type"], "state": record["state"]}, pipe=ops)
        duration = _seconds_between(record.get("started_at"), record.get("finished_at"))
        if duration is not None:
            self.observe("bigmodel_job_duration_seconds", duration, {"type": record["type"]}, pipe=ops)
        args: list[Any] = [marker_ttl]
        for _, kind, field, amount in ops.ops:
            args += [kind, field, amount]
        marker = f"{self.prefix}:metrics:counted:{record['id']}"
        return bool(self._once(keys=[marker, *(key for key, *_ in ops.ops)], args=args))

    def key(self, family: Family) -> str:
        """The hash that holds a family."""
        return f"{self.prefix}:metrics:{family.name}"

    def inc(self, name: str, labels: Mapping[str, str] | None = None, amount: int = 1,
            pipe: Any = None) -> None:
        """Add to a counter (in `pipe` when given, so it rides an existing round trip)."""
        family = FAMILIES[name]
        (pipe or self.r).hincrby(self.key(family), _label_key(family, labels or {}), amount)

    def observe(self, name: str, value: float, labels: Mapping[str, str] | None = None,
                count: int = 1, pipe: Any = None) -> None:
        """Add `count` observations of `value` to a histogram."""
        family = FAMILIES[name]
        target = pipe if pipe is not None else self.r.pipeline(transaction=False)
        base = _label_key(family, labels or {})
        bucket = next((b for b in family.buckets if value <= b), math.inf)
        key = self.key(family)
        target.hincrby(key, f"{base}|le={bucket}", count)
        target.hincrby(key, f"{base}|count", count)
        target.hincrbyfloat(key, f"{base}|sum", value * count)
        if pipe is None:
            target.execute()

    def observe_many(self, name: str, values: list[float], labels: Mapping[str, str] | None = None,
                     pipe: Any = None) -> None:
        """Add many observations to a histogram with one command per bucket touched (a batch's latencies)."""
        if not values:
            return
        family = FAMILIES[name]
        target = pipe if pipe is not None else self.r.pipeline(transaction=False)
        base = _label_key(family, labels or {})
        counts: dict[float, int] = {}
        for value in values:
            bucket = next((b for b in family.buckets if value <= b), math.inf)
            counts[bucket] = counts.get(bucket, 0) + 1
        key = self.key(family)
        for bucket, count in counts.items():
            target.hincrby(key, f"{base}|le={bucket}", count)
        target.hincrby(key, f"{base}|count", len(values))
        target.hincrbyfloat(key, f"{base}|sum", float(sum(values)))
        if pipe is None:
            target.execute()

    def read(self) -> dict[str, dict[str, float]]:
        """Every family's raw fields (one pipelined round trip)."""
        pipe = self.r.pipeline(transaction=False)
        for family in FAMILIES.values():
            pipe.hgetall(self.key(family))
        raw = pipe.execute()
        return {name: {k.decode(): float(v) for k, v in fields.items()}
                for name, fields in zip(FAMILIES, raw, strict=True)}


def _labels_of(base: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in base.split(",") if item)


class RedisCollector(Collector):
    """A Prometheus collector that reads the Redis-held families at scrape time."""

    def __init__(self, metrics: RedisMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        try:
            data = self.metrics.read()
        except redis.exceptions.RedisError:
            return  # /metrics still answers with what the process itself knows
        for name, fields in data.items():
            family = FAMILIES[name]
            if family.kind == "counter":
                out = CounterMetricFamily(name.removesuffix("_total"), family.help, labels=family.labels)
                for base, value in sorted(fields.items()):
                    labels = _labels_of(base)
                    out.add_metric([labels[k] for k in family.labels], value)
                yield out
                continue
            hist = HistogramMetricFamily(name, family.help, labels=family.labels)
            for base in sorted({f.split("|", 1)[0] for f in fields}):
                labels = _labels_of(base)
                running, buckets = 0.0, []
                for edge in (*family.buckets, math.inf):
                    running += fields.get(f"{base}|le={edge}", 0.0)
                    buckets.append(("+Inf" if edge == math.inf else repr(float(edge)), running))
                hist.add_metric([labels[k] for k in family.labels], buckets,
                                fields.get(f"{base}|sum", 0.0))
            yield hist


class BufferedCounts:
    """Counter increments gathered in the process and sent to Redis at most every `interval` seconds,
    so that counting HTTP requests costs no round trip per request."""

    def __init__(self, metrics: RedisMetrics, interval: float = 1.0) -> None:
        self.metrics = metrics
        self.interval = interval
        self._pending: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None

    def inc(self, name: str, labels: Mapping[str, str]) -> None:
        """Add one to a counter (sent with the next flush)."""
        with self._lock:
            self._pending[(name, tuple(labels.items()))] += 1
            if self._flusher is None:  # started on first use: after gunicorn has forked this process
                self._flusher = threading.Thread(target=self._run, name="metrics-flush", daemon=True)
                self._flusher.start()

    def flush(self) -> None:
        """Send what has been gathered (kept for the next flush if Redis does not answer)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        pipe = self.metrics.r.pipeline(transaction=False)
        for (name, labels), amount in pending.items():
            self.metrics.inc(name, dict(labels), amount, pipe=pipe)
        try:
            pipe.execute()
        except redis.exceptions.RedisError:
            with self._lock:
                self._pending.update(pending)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()
