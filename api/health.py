"""Health, readiness and metrics routes."""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, Response, jsonify
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.services import services
from bigmodel.errors import BigModelError
from bigmodel.stats import RedisCollector, RedisMetrics

bp = Blueprint("health", __name__)


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (one per app, not global)."""

    def __init__(self, client: redis.Redis) -> None:
        self.registry = CollectorRegistry()
        # Job and inference figures observed by every worker and serving process, read at scrape time.
        self.registry.register(RedisCollector(RedisMetrics(client)))
        self.requests = Counter("bigmodel_http_requests", "HTTP requests", ["method", "status"],
                                registry=self.registry)
        self.jobs_submitted = Counter("bigmodel_jobs_submitted", "Jobs accepted", ["type", "queue"],
                                      registry=self.registry)
        self.queue_depth = Gauge("bigmodel_queue_depth", "Messages waiting", ["queue"],
                                 registry=self.registry)
        self.workers = Gauge("bigmodel_workers_online", "Workers with a live heartbeat", ["pool"],
                             registry=self.registry)


@bp.get("/healthz")
def healthz() -> Any:
    """200 while the process is up."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Any:
    """200 when Redis answers and the store is writable; lists pools and queue depths."""
    s = services()
    checks: dict[str, str] = {}
    body: dict[str, Any] = {"status": "ok", "checks": checks}
    try:
        s.redis.ping()
        checks["redis"] = "ok"
        body["pools"] = s.presence.pools()
        body["queues"] = s.presence.depths()
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
    """Prometheus text format."""
    s = services()
    m: Metrics = s.metrics  # type: ignore[attr-defined]
    try:
        for queue, depth in s.presence.depths().items():
            m.queue_depth.labels(queue).set(depth)
        for pool, info in s.presence.pools().items():
            m.workers.labels(pool).set(len(info["workers"]))
    except redis.exceptions.RedisError:
        pass  # metrics still answer with what the process knows
    return Response(generate_latest(m.registry), mimetype=CONTENT_TYPE_LATEST)
