"""Every error as application/problem+json (RFC 9457), in one place."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, has_request_context, json, request
from werkzeug.exceptions import HTTPException

from bigmodel.errors import BigModelError, ValidationFailed

log = logging.getLogger(__name__)


def speaks_inference_protocol(path: str) -> bool:
    """Whether a path belongs to KServe V2 or TF Serving's :predict, whose errors are {"error": "..."}."""
    return path == "/v2" or path.startswith("/v2/") or (path.startswith("/v1/models/")
                                                        and path.endswith(":predict"))


def problem(status: int, title: str, detail: str, type_: str = "about:blank",
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """A problem+json response (or the inference protocols' {"error": detail} on their routes)."""
    if has_request_context() and speaks_inference_protocol(request.path):
        response = Response(json.dumps({"error": detail}), status=status, mimetype="application/json")
    else:
        body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
        response = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register(app: Flask) -> None:
    """Install the handlers that turn exceptions into problem+json."""

    @app.errorhandler(BigModelError)
    def _bigmodel(exc: BigModelError) -> Response:
        extra: dict[str, Any] = {}
        if isinstance(exc, ValidationFailed):
            extra["errors"] = exc.errors
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        return problem(exc.status, exc.title, exc.message, f"/problems/{exc.slug}", headers, **extra)

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    def _redis_down(exc: Exception) -> Response:
        # The message of a redis error can name the host; never the password, but keep it out anyway.
        log.warning("Redis is unreachable: %s", type(exc).__name__)
        return problem(503, "Service unavailable", "the job database (Redis) is unreachable; retry later",
                       "/problems/RedisUnavailable", {"Retry-After": "5"})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = exc.code or 500
        return problem(code, exc.name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem(500, "Internal error", "an unexpected error happened; it has been logged")
