"""Bearer tokens to tenants; with no tokens configured everyone is the 'default' tenant."""

from __future__ import annotations

import hmac

from flask import Flask, g, request

from bigmodel.config import Settings
from bigmodel.errors import Forbidden, Unauthorized
from bigmodel.network import is_loopback

DEFAULT_TENANT = "default"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/"})
PUBLIC_PREFIXES = ("/v2/health", "/ui/")  # the dashboard's static files carry no data


def tenant_for(settings: Settings, header: str | None) -> str:
    """The tenant a request acts for, from its Authorization header."""
    if not settings.auth_enabled:
        return DEFAULT_TENANT
    if not header or not header.startswith("Bearer "):
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    given = header[len("Bearer "):].strip()
    for token, tenant in settings.tokens.items():
        if hmac.compare_digest(token.encode(), given.encode()):
            return tenant
    raise Unauthorized("the token is not valid")


def register(app: Flask, settings: Settings) -> None:
    """Resolve the tenant before each request; with no tokens configured, serve loopback clients only."""

    @app.before_request
    def _authenticate() -> None:
        if not settings.auth_enabled and not is_loopback(request.remote_addr):
            # Enforced here, not only by the CLI's bind check, so that however the app is served
            # (gunicorn 'api:create_app()' on 0.0.0.0, a proxy...) no tokens never means open to all.
            raise Forbidden("this API has no tokens configured and only serves clients on its own "
                            "machine; set BIGMODEL_TOKENS to serve others")
        if request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
            g.tenant = None
            return
        g.tenant = tenant_for(settings, request.headers.get("Authorization"))
