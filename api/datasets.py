"""Dataset routes: upload (multipart), list, read."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from api.requests_util import cursor_arg, int_arg
from api.services import services, tenant
from bigmodel.errors import InvalidRequest
from bigmodel.names import check_name

bp = Blueprint("datasets", __name__, url_prefix="/v1/datasets")

PUBLIC_FIELDS = ("id", "name", "kind", "format", "rows", "columns", "sha256", "size_bytes",
                 "created_at", "source", "splits", "transform")


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the API shows it (raw datasets have no source, splits or transform)."""
    return {k: record[k] for k in PUBLIC_FIELDS if k in record}


@bp.post("")
def upload() -> Any:
    """POST /v1/datasets: multipart `file` (CSV/Parquet) and `name`; 201, or 200 if already stored."""
    if "file" not in request.files:
        raise InvalidRequest("send the dataset as multipart/form-data with a 'file' field")
    upload = request.files["file"]
    payload = upload.read()
    name = request.form.get("name") or None
    if name is not None:
        check_name(name, "dataset name")
    s = services()
    record, created = s.datasets(tenant()).ingest(payload, upload.filename or None, name,
                                                  s.settings.max_upload_bytes)
    response = jsonify(public(record))
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/datasets/{record['id']}"
    return response


@bp.get("")
def list_datasets() -> Any:
    """GET /v1/datasets: newest first."""
    items, cursor = services().datasets(tenant()).list(int_arg("limit", 50, 1, 500), cursor_arg())
    return jsonify(items=[public(r) for r in items], next_cursor=cursor)


@bp.get("/<dataset_id>")
def get_dataset(dataset_id: str) -> Any:
    """GET /v1/datasets/{id}."""
    return jsonify(public(services().datasets(tenant()).get(dataset_id)))
