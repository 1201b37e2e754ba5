"""The web dashboard at `/`: static files shipped in the package, served with a strict CSP.

`GET /` answers the dashboard to browsers (which ask for text/html) and the JSON index to API
clients (which ask for JSON, or for anything: `*/*`), so scripts that read `/` keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, send_from_directory

STATIC = Path(__file__).parent / "static"
# Only this origin, for everything: no CDN, no inline script or style, no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

bp = Blueprint("dashboard", __name__)


def _harden(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/")
def index() -> Any:
    """The dashboard for browsers; a JSON index of the API for everyone else."""
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        return _harden(send_from_directory(STATIC, "index.html", max_age=0))
    auth = "bearer" if current_app.extensions["bigmodel"].settings.auth_enabled else "none"
    response = jsonify(name="bigmodel", dashboard="/", docs="/openapi.json", health="/healthz",
                       ready="/readyz", metrics="/metrics", auth=auth)
    response.vary.add("Accept")
    return response


@bp.get("/ui/<path:name>")
def asset(name: str) -> Any:
    """The dashboard's scripts, styles and icon (send_from_directory refuses paths that leave it)."""
    return _harden(send_from_directory(STATIC, name, max_age=300))
