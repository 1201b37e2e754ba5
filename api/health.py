"""Health, readiness and metrics routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from api.auth import tenant_for
from api.services import Services, services
from bigmodel.config import Settings
from bigmodel.errors import BigModelError, Unauthorized
from bigmodel.jobs.presence import QUEUES
from bigmodel.stats import BufferedCounts, RedisCollector, RedisMetrics

bp = Blueprint("health", __name__)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class SystemCollector(Collector):
    """Gauges read from Redis at scrape time: queue depths, the oldest waiting job, workers online."""

    def __init__(self, s: Services) -> None:
        self.s = s

    def collect(self) -> Iterator[Any]:
        try:
            depths = self.s.presence.depths()
            ages = self.s.queues.oldest_ages()
            pools = self.s.presence.pools()
        except redis.exceptions.RedisError:
            return  # /metrics still answers with the rest
        depth = GaugeMetricFamily("bigmodel_queue_depth", "Jobs waiting on a queue", labels=["queue"])
        oldest = GaugeMetricFamily("bigmodel_queue_oldest_age_seconds",
                                   "How long the oldest job waiting on a queue has waited (the scaling "
                                   "signal)", labels=["queue"])
        for queue in QUEUES:
            depth.add_metric([queue], depths.get(queue, 0))
            oldest.add_metric([queue], ages.get(queue, 0.0))
        online = GaugeMetricFamily("bigmodel_workers_online", "Workers with a live heartbeat",
                                   labels=["pool"])
        for pool, info in sorted(pools.items()):
            online.add_metric([pool], len(info["workers"]))
        yield from (depth, oldest, online)


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (one per app, not global).

    Everything is read from Redis at scrape time, so any API process answers for the whole system:
    counters and histograms kept by every process (bigmodel.stats) and gauges of queues and workers.
    """

    def __init__(self, s: Services) -> None:
        redis_metrics = RedisMetrics(s.redis)
        self.counts = BufferedCounts(redis_metrics)
        self.registry = CollectorRegistry()
        self.registry.register(RedisCollector(redis_metrics))
        self.registry.register(SystemCollector(s))

    def request(self, method: str, status: int) -> None:
        """Count an answered HTTP request."""
        method = method if method in HTTP_METHODS else "OTHER"  # a label set clients cannot grow
        self.counts.inc("bigmodel_http_requests_total", {"method": method, "status": str(status)})

    def submitted(self, job_type: str, queue: str) -> None:
        """Count an accepted job."""
        self.counts.inc("bigmodel_jobs_submitted_total", {"type": job_type, "queue": queue})


@bp.get("/healthz")
def healthz() -> Any:
    """200 while the process is up."""
    return jsonify(status="ok")


def shows_details(settings: Settings) -> bool:
    """Whether this caller may see worker names: any valid token, no tokens configured, or the operator's
    BIGMODEL_PUBLIC_DETAILS. Any tenant's token, because the names are the operator's machines, not a
    tenant's data, and every tenant already sees them in its own jobs' `worker` field."""
    if settings.public_details or not settings.auth_enabled:
        return True
    try:
        tenant_for(settings, request.headers.get("Authorization"))
    except Unauthorized:
        return False  # a probe is never refused: it gets the counts
    return True


def pool_view(pools: dict[str, dict[str, Any]], details: bool) -> dict[str, dict[str, Any]]:
    """Pools with their worker counts; the workers' names (host names) only with details."""
    return {name: {"workers_online": len(p["workers"]), "concurrency": p["concurrency"],
                   "queues": p["queues"], "backends": p.get("backends", []),
                   **({"workers": p["workers"]} if details else {})}
            for name, p in pools.items()}


@bp.get("/readyz")
def readyz() -> Any:
    """200 when Redis answers and the store is writable; pools (with counts) and queue depths."""
    s = services()
    checks: dict[str, str] = {}
    body: dict[str, Any] = {"status": "ok", "checks": checks}
    try:
        s.redis.ping()
        checks["redis"] = "ok"
        body["pools"] = pool_view(s.presence.pools(), shows_details(s.settings))
        body["queues"] = s.presence.depths()
        body["oldest_waiting_seconds"] = {q: round(a, 1) for q, a in s.queues.oldest_ages().items()}
    except redis.exceptions.RedisError:
        checks["redis"] = "unreachable"
    try:
        s.store.check_writable()
        checks["store"] = "ok"
    except (BigModelError, OSError):
        checks["store"] = "not writable"
    if "queues" in body and body["queues"].get("gpu") and "gpu" not in body.get("pools", {}):
        body["warnings"] = ["jobs wait on the gpu queue and no gpu worker is online"]
    ok = all(v == "ok" for v in checks.values())
    body["status"] = "ok" if ok else "unavailable"
    response = jsonify(body)
    response.status_code = 200 if ok else 503
    if not ok:
        response.headers["Retry-After"] = "5"
    return response


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, the whole system's figures from any API process: counts, never names."""
    m: Metrics = services().metrics  # type: ignore[attr-defined]
    m.counts.flush()  # this process's own counts first
    # content_type, not mimetype: CONTENT_TYPE_LATEST already names its charset, and Flask would add one.
    return Response(generate_latest(m.registry), content_type=CONTENT_TYPE_LATEST)
