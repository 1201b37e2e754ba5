"""The Flask API: an application factory with one blueprint per resource."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from bigmodel.config import Settings


def create_app(settings: Settings | None = None, *, celery: Any = None) -> Flask:
    """Build the API for these settings (read from the environment when not given)."""
    from api import auth, dashboard, datasets, errors, health, jobs, models, openapi, services, tfserving, v2
    from api import limits as rate_limits

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    # Flask answers 413 itself past this; a little slack for the multipart envelope.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    s = services.build(settings, celery)
    s.metrics = health.Metrics(s)  # type: ignore[attr-defined]
    app.extensions["bigmodel"] = s
    errors.register(app)
    auth.register(app, settings)
    for bp in (health.bp, datasets.bp, jobs.bp, models.bp, openapi.bp, v2.bp, tfserving.bp, dashboard.bp):
        app.register_blueprint(bp)
    rate_limits.register(app, settings, s.redis)  # after auth (its key is the tenant) and the routes

    @app.after_request
    def _count(response: Response) -> Response:
        s.metrics.request(request.method, response.status_code)  # type: ignore[attr-defined]
        return response

    return app
