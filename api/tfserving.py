"""TensorFlow Serving REST `:predict`: thin over bigmodel.serving.dataplane."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, jsonify, request

from api.services import services, tenant
from bigmodel.errors import InvalidRequest
from bigmodel.names import check_name
from bigmodel.serving import codecs
from bigmodel.serving.dataplane import DataPlane

bp = Blueprint("tfserving", __name__, url_prefix="/v1/models")


@bp.post("/<name>:predict")
@bp.post("/<name>/versions/<version>:predict")
@bp.post("/<name>/labels/<label>:predict")
def predict(name: str, version: str | None = None, label: str | None = None) -> Any:
    """POST /v1/models/{name}[/versions/{v}|/labels/{alias}]:predict -> {"predictions": [...]}."""
    plane: DataPlane = services().dataplane
    if version is not None and not version.isdigit():
        raise InvalidRequest(f"version {version!r} is not a number; an alias goes under /labels/{{alias}}")
    ref = version if version is not None else (check_name(label, "label") if label is not None else None)
    meta = plane.resolve(tenant(), check_name(name, "model"), ref)
    plane.check_body(request.content_length)
    decoded = codecs.decode_tfserving(_body())
    x = plane.check_features(meta, plane.encode_rows(meta, decoded.rows, decoded.columns))
    return jsonify(codecs.encode_tfserving(decoded, plane.infer(tenant(), name, meta, x)))


def _body() -> dict[str, Any]:
    """The JSON object sent, whatever the Content-Type (TF Serving's clients often send none)."""
    try:
        body = json.loads(request.get_data(cache=False))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body
