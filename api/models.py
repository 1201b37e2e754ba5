"""Model registry routes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from api.requests_util import json_body, parse
from api.services import services, tenant
from bigmodel.names import check_name
from bigmodel.schemas import AliasMove

bp = Blueprint("models", __name__, url_prefix="/v1/models")


@bp.get("")
def list_models() -> Any:
    """GET /v1/models: each model with its latest and production versions."""
    registry = services().registry(tenant())
    return jsonify(items=[registry.summary(n) for n in registry.names()])


@bp.get("/<name>")
def get_model(name: str) -> Any:
    """GET /v1/models/{name}: versions, aliases, alias history and TF Serving's status list."""
    return jsonify(services().registry(tenant()).describe(check_name(name)))


@bp.post("/<name>/aliases/<alias>")
def move_alias(name: str, alias: str) -> Any:
    """POST /v1/models/{name}/aliases/{alias} with {"version": n}."""
    body = parse(AliasMove, json_body())
    registry = services().registry(tenant())
    entry = registry.move_alias(check_name(name), alias, body.version, by=tenant())
    return jsonify(entry=entry, aliases=registry.aliases(name))
