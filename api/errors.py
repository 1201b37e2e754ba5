"""Every error as application/problem+json (RFC 9457), in one place; `type` is /problems/<error type>."""

from __future__ import annotations

import logging
import re
from typing import Any

import redis
from flask import Flask, Response, has_request_context, json, request
from werkzeug.exceptions import HTTPException

from bigmodel.errors import BigModelError, QuotaExceeded, RedisUnavailable, ValidationFailed

log = logging.getLogger(__name__)


# TF Serving's REST routes: /v1/models/{name}[/versions/{v}|/labels/{alias}]:predict
_TF_SERVING = re.compile(r"^/v1/models/[^/]+(/versions/[^/]+|/labels/[^/]+)?:predict$")


def speaks_inference_protocol(path: str) -> bool:
    """Whether a path belongs to KServe V2 or TF Serving's :predict, whose errors are {"error": "..."}."""
    return path == "/v2" or path.startswith("/v2/") or bool(_TF_SERVING.match(path))


def problem(status: int, title: str, detail: str, code: str,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """A problem+json response whose `type` names the snake_case error type (or the inference
    protocols' {"error": detail} on their routes)."""
    if has_request_context() and speaks_inference_protocol(request.path):
        response = Response(json.dumps({"error": detail}), status=status, mimetype="application/json")
    else:
        body = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail, **extra}
        response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _bigmodel(exc: BigModelError) -> Response:
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationFailed):
        extra["errors"] = exc.errors
    if isinstance(exc, QuotaExceeded):  # the body names the limit: {limit, max, setting}
        extra.update({k: v for k, v in exc.extra.items() if k != "retry_after"})
    retry_after = exc.extra.get("retry_after", 5)
    headers = {"Retry-After": str(retry_after)} if exc.status in (429, 503) else None
    return problem(exc.status, exc.title, exc.message, exc.code, headers, **extra)


def register(app: Flask) -> None:
    """Install the handlers that turn exceptions into problem+json."""
    app.register_error_handler(BigModelError, _bigmodel)

    @app.errorhandler(redis.exceptions.ConnectionError)  # also BusyLoadingError: Redis loading its AOF
    @app.errorhandler(redis.exceptions.TimeoutError)
    def _redis_down(exc: Exception) -> Response:
        # The message of a redis error can name the host; never the password, but keep it out anyway.
        log.warning("Redis is unreachable: %s", type(exc).__name__)
        return _bigmodel(RedisUnavailable("the job database (Redis) is unreachable; retry later"))

    @app.errorhandler(redis.exceptions.OutOfMemoryError)
    def _redis_full(exc: Exception) -> Response:
        # maxmemory-policy noeviction: Redis refuses writes rather than silently dropping jobs.
        log.error("Redis is out of memory (maxmemory reached); writes are refused")
        return _bigmodel(RedisUnavailable("the job database (Redis) is full; retry later"))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = exc.code or 500
        slug = re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")
        return problem(code, exc.name, exc.description or exc.name, slug)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem(500, "Internal error", "an unexpected error happened; it has been logged",
                       "internal_error")
