"""The OpenAPI 3.1 document, generated from the same pydantic schemas that validate requests."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

import bigmodel
from api.openapi_shapes import ALSO, PARAMETERS, RESPONSES, SHAPES, path_parameter
from bigmodel import schemas
from bigmodel.jobs.jobtypes import JOB_TYPES

bp = Blueprint("openapi", __name__)

PROBLEM = {"description": "problem+json", "content": {"application/problem+json": {
    "schema": {"$ref": "#/components/schemas/Problem"}}}}
JSON_OK = {"content": {"application/json": {"schema": {"type": "object"}}}}

# (method, path, summary, request schema name or None, success status)
ROUTES: list[tuple[str, str, str, str | None, str]] = [
    ("get", "/healthz", "Liveness", None, "200"),
    ("get", "/readyz", "Readiness: Redis, store, pools and queue depths", None, "200"),
    ("get", "/metrics", "Prometheus metrics", None, "200"),
    ("get", "/openapi.json", "This document", None, "200"),
    ("post", "/v1/datasets", "Upload a CSV or Parquet dataset (multipart: file, name)", "Upload", "201"),
    ("get", "/v1/datasets", "List datasets, newest first", None, "200"),
    ("get", "/v1/datasets/{id}", "A dataset record", None, "200"),
    ("post", "/v1/jobs", "Submit a job", "JobSubmission", "202"),
    ("get", "/v1/jobs", "List jobs (?state=&type=&limit=&cursor=)", None, "200"),
    ("get", "/v1/jobs/{id}", "A job record", None, "200"),
    ("post", "/v1/jobs/{id}/cancel", "Cancel a job", None, "202"),
    ("get", "/v1/jobs/{id}/events", "Server-Sent Events of a job (?follow=0 for a JSON list)", None, "200"),
    ("get", "/v1/jobs/{id}/artifacts/{name}", "Download an artifact", None, "200"),
    ("get", "/v1/models", "List models", None, "200"),
    ("get", "/v1/models/{name}", "A model with versions, aliases and alias history", None, "200"),
    ("post", "/v1/models/{name}/aliases/{alias}", "Move an alias", "AliasMove", "200"),
]


def document() -> dict[str, Any]:
    """Build the OpenAPI document."""
    components: dict[str, Any] = {
        "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                                   "status": {"type": "integer"}, "detail": {"type": "string"},
                                   "errors": {"type": "array", "items": {"type": "object"}}}},
        "Upload": {"type": "object", "required": ["file"],
                   "properties": {"file": {"type": "string", "format": "binary"},
                                  "name": {"type": "string"}}},
    }
    for model in (schemas.JobSubmission, schemas.AliasMove):
        components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for job_type in JOB_TYPES.values():
        schema = job_type.params.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            components.setdefault(name, sub)
        schema["description"] = job_type.summary
        components[f"{job_type.name.capitalize()}Params"] = schema
    for schema in list(components.values()):
        for name, sub in schema.pop("$defs", {}).items():
            components.setdefault(name, sub)
    components.update(SHAPES)
    paths: dict[str, Any] = {}
    for method, path, summary, body, status in ROUTES:
        media_types = RESPONSES.get((method, path))
        ok = {"content": {m: {"schema": s} for m, s in media_types.items()}} if media_types else JSON_OK
        op: dict[str, Any] = {"summary": summary, "responses": {status: {"description": "OK", **ok},
                                                                "4XX": PROBLEM, "503": PROBLEM}}
        params = [path_parameter(path, seg.strip("{}")) for seg in path.split("/") if seg.startswith("{")]
        params += PARAMETERS.get((method, path), [])
        if params:
            op["parameters"] = params
        if body:
            media = "multipart/form-data" if body == "Upload" else "application/json"
            op["requestBody"] = {"required": True, "content": {
                media: {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
        for other, description in ALSO.get((method, path), {}).items():
            op["responses"][other] = {"description": description, **ok}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "bigmodel", "version": bigmodel.__version__,
                 "description": "Jobs for machine learning over HTTP. Job params: see "
                                + ", ".join(f"{t.capitalize()}Params" for t in JOB_TYPES)},
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }


@bp.get("/openapi.json")
def openapi() -> Any:
    """GET /openapi.json."""
    return jsonify(document())
