"""Dataset routes: upload (multipart), list, read."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

from flask import Blueprint, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.formparser import MultiPartParser

from api.requests_util import cursor_arg, int_arg
from api.services import services, tenant
from bigmodel.errors import InvalidRequest
from bigmodel.ml.datasets import Datasets
from bigmodel.ml.upload import Upload
from bigmodel.names import check_name

bp = Blueprint("datasets", __name__, url_prefix="/v1/datasets")
MAX_FORM_PARTS = 16  # a file and a name; a body of thousands of parts is an attack, not an upload
READ_BYTES = 1 << 20

PUBLIC_FIELDS = ("id", "name", "kind", "format", "rows", "columns", "sha256", "size_bytes",
                 "created_at", "source", "splits", "transform")


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the API shows it (raw datasets have no source, splits or transform)."""
    return {k: record[k] for k in PUBLIC_FIELDS if k in record}


@contextlib.contextmanager
def _received(datasets: Datasets, max_bytes: int) -> Iterator[tuple[MultiDict[str, str], Upload]]:
    """The request's form fields and its `file` part, streamed into an Upload; every Upload closed after."""
    boundary = request.mimetype_params.get("boundary", "").encode("ascii", "replace")
    if request.mimetype != "multipart/form-data" or not boundary:
        raise InvalidRequest("send the dataset as multipart/form-data with a 'file' field")
    uploads: list[Upload] = []

    def into_upload(*, filename: str | None = None, **_: Any) -> Upload:
        # werkzeug hands each file part here chunk by chunk: hashed and converted as it arrives.
        uploads.append(datasets.new_upload(max_bytes, filename))
        return uploads[-1]

    # Reads of 1 MiB, not werkzeug's default 64 KiB: the server's body reader copies what it holds
    # beyond each read, so small reads of a large body cost a copy of the read-ahead every time. The
    # parser holds one read at a time, so its memory bound for form fields must allow one.
    limit = max(request.max_form_memory_size or 0, 2 * READ_BYTES)
    parser = MultiPartParser(stream_factory=into_upload,  # type: ignore[arg-type]
                             max_form_memory_size=limit, buffer_size=READ_BYTES,
                             max_form_parts=MAX_FORM_PARTS)
    try:
        try:
            form, files = parser.parse(request.stream, boundary, request.content_length)
        except ValueError as exc:  # werkzeug's word for a malformed body
            raise InvalidRequest(f"the multipart/form-data body is malformed: {exc}") from None
        if "file" not in files:
            raise InvalidRequest("send the dataset as multipart/form-data with a 'file' field")
        yield form, cast(Upload, files["file"].stream)
    finally:
        for upload in uploads:
            upload.close()


@bp.post("")
def upload() -> Any:
    """POST /v1/datasets: multipart `file` (CSV/Parquet) and `name`; 201, or 200 if already stored."""
    s = services()
    datasets = s.datasets(tenant())
    with _received(datasets, s.settings.max_upload_bytes) as (form, received):
        name = form.get("name") or None
        if name is not None:
            check_name(name, "dataset name")
        record, created = datasets.ingest(received, name)
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
