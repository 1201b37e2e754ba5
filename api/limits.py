"""Per-tenant request rates (flask-limiter, counted in the shared Redis) and the request body bound."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, Response, g, request
from flask_limiter import Limiter, RateLimitExceeded
from werkzeug.exceptions import RequestEntityTooLarge

from api.errors import problem
from bigmodel.config import Settings
from bigmodel.limits import BOUNDS, RATES

UPLOAD_ENDPOINT = "datasets.upload"  # bounded by BIGMODEL_MAX_UPLOAD_BYTES instead of the body bound


@dataclass(frozen=True)
class Rule:
    """A rate some routes share: its name in the 429 body, its Limits field and the endpoints it counts."""

    scope: str
    field: str
    endpoints: tuple[str, ...]


RULES = (
    Rule("submissions", "submit_rate", ("jobs.submit", UPLOAD_ENDPOINT)),
    Rule("inference", "infer_rate", ("v2.infer", "tfserving.predict")),
)


def _tenant() -> str:
    # Keyed by tenant, not by token: a tenant's several tokens share one budget, and a token never
    # becomes a Redis key or a line of flask-limiter's log (which names the key of a breached limit).
    return g.tenant  # type: ignore[no-any-return]


def register(app: Flask, settings: Settings, client: redis.Redis) -> Limiter:
    """Count each rule's routes per tenant in Redis (shared by every API process); bound request bodies."""
    # The app's own connection pool: the password and TLS settings of bigmodel.connections apply, and
    # the URL (with its password) is never handed to another library.
    storage: dict[str, Any] = {"connection_pool": client.connection_pool, "key_prefix": "bm:ratelimit"}
    limiter = Limiter(_tenant, app=app, strategy="sliding-window-counter", headers_enabled=False,
                      storage_uri="redis://", storage_options=storage)
    by_scope = {}
    for rule in RULES:
        rate = getattr(settings.limits, rule.field)
        if rate is None:
            continue
        by_scope[rule.scope] = rule
        shared = limiter.shared_limit(rate, scope=rule.scope)
        for endpoint in rule.endpoints:
            app.view_functions[endpoint] = shared(app.view_functions[endpoint])  # type: ignore[assignment]

    @app.before_request
    def _bound_body() -> None:
        if request.endpoint != UPLOAD_ENDPOINT:
            request.max_content_length = settings.limits.body_bytes  # werkzeug answers 413 past it

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> Response:
        rule = by_scope[str(exc.limit.scope)]
        current = limiter.current_limit
        wait = max(1, math.ceil(current.reset_at - time.time())) if current else 1
        rate, setting = str(exc.limit.limit), RATES[rule.field]
        detail = (f"tenant {g.tenant!r} is over its {rule.scope} rate limit of {rate} (the server's "
                  f"{setting}); retry in {wait} s")
        return problem(429, "Too many requests", detail, "rate_limited",
                       {"Retry-After": str(wait)}, limit=rule.scope, rate=rate, setting=setting)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> Response:
        if request.endpoint == UPLOAD_ENDPOINT:
            name, limit, setting = "upload_bytes", settings.max_upload_bytes, "BIGMODEL_MAX_UPLOAD_BYTES"
        else:
            name, limit, setting = "body_bytes", settings.limits.body_bytes, BOUNDS["body_bytes"].setting
        return problem(413, "Payload too large", f"the request body is over the limit of {limit} bytes "
                       f"(the server's {setting})", "payload_too_large", limit=name,
                       setting=setting)

    return limiter
