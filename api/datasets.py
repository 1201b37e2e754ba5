"""Dataset routes: upload (multipart), list, read."""

from __future__ import annotations

from typing import Any, cast

from flask import Blueprint, jsonify, request
from werkzeug.formparser import FormDataParser

from api.requests_util import cursor_arg, int_arg
from api.services import services, tenant
from bigmodel.errors import InvalidRequest
from bigmodel.ml.upload import Upload
from bigmodel.names import check_name

bp = Blueprint("datasets", __name__, url_prefix="/v1/datasets")
MAX_FORM_PARTS = 16  # a file and a name; a body of thousands of parts is an attack, not an upload

PUBLIC_FIELDS = ("id", "name", "kind", "format", "rows", "columns", "sha256", "size_bytes",
                 "created_at", "source", "splits", "transform")


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the API shows it (raw datasets have no source, splits or transform)."""
    return {k: record[k] for k in PUBLIC_FIELDS if k in record}


@bp.post("")
def upload() -> Any:
    """POST /v1/datasets: multipart `file` (CSV/Parquet) and `name`; 201, or 200 if already stored."""
    if request.mimetype != "multipart/form-data":
        raise InvalidRequest("send the dataset as multipart/form-data with a 'file' field")
    s = services()
    datasets = s.datasets(tenant())
    uploads: list[Upload] = []

    def into_upload(*, filename: str | None = None, **_: Any) -> Upload:
        # werkzeug streams each file part here chunk by chunk: hashed and converted as it arrives.
        uploads.append(datasets.new_upload(s.settings.max_upload_bytes, filename))
        return uploads[-1]

    try:
        parser = FormDataParser(stream_factory=into_upload,  # type: ignore[arg-type]
                                max_form_memory_size=request.max_form_memory_size,
                                max_form_parts=MAX_FORM_PARTS)
        _, form, files = parser.parse(request.stream, request.mimetype, request.content_length,
                                      request.mimetype_params)
        if "file" not in files:
            raise InvalidRequest("send the dataset as multipart/form-data with a 'file' field")
        name = form.get("name") or None
        if name is not None:
            check_name(name, "dataset name")
        record, created = datasets.ingest(cast(Upload, files["file"].stream), name)
    finally:
        for upload in uploads:
            upload.close()
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
