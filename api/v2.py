"""Open Inference Protocol (KServe V2) over REST: thin over bigmodel.serving.dataplane."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

import bigmodel
from api.services import services, tenant
from bigmodel.names import check_name
from bigmodel.serving import codecs
from bigmodel.serving.dataplane import DataPlane, output_width

bp = Blueprint("v2", __name__, url_prefix="/v2")


def _plane() -> DataPlane:
    return services().dataplane


@bp.get("")
def server_metadata() -> Any:
    """GET /v2: name, version and the protocol extensions this server implements."""
    return jsonify(name="bigmodel", version=bigmodel.__version__, extensions=["binary_tensor_data"])


@bp.get("/health/live")
def live() -> Any:
    """GET /v2/health/live: 200 while the API process is up."""
    return jsonify(live=True)


@bp.get("/health/ready")
def ready() -> Any:
    """GET /v2/health/ready: 200 when a serving process is online, else 503 with Retry-After."""
    _plane().require_server()
    return jsonify(ready=True)


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Any:
    """GET /v2/models/{name}[/versions/{v}]: inputs and outputs with datatype and shape."""
    plane = _plane()
    meta = plane.resolve(tenant(), check_name(name, "model"), version)
    return jsonify(codecs.v2_metadata(name, plane.versions(tenant(), name), meta, output_width(meta)))


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Any:
    """GET .../ready: 200 when the version exists and a serving process can load it."""
    plane = _plane()
    meta = plane.resolve(tenant(), check_name(name, "model"), version)
    plane.require_server()
    return jsonify(name=name, version=str(meta["version"]), ready=True)


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Any:
    """POST .../infer: JSON tensors or the binary tensor data extension, answered the same way."""
    plane = _plane()
    meta = plane.resolve(tenant(), check_name(name, "model"), version)
    plane.check_body(request.content_length)
    decoded = codecs.decode_v2(request.get_data(cache=False), request.headers.get(codecs.HEADER_LENGTH))
    x = plane.check_features(meta, codecs.v2_features(decoded))
    y = plane.infer(tenant(), name, meta, x, decoded.timeout)
    body, headers = codecs.encode_v2(name, int(meta["version"]), decoded, y)
    return Response(body, status=200, headers=headers)
