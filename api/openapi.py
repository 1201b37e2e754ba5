"""The OpenAPI 3.1 document, generated from the same pydantic schemas that validate requests."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

import bigmodel
from api.errors import speaks_inference_protocol
from api.openapi_shapes import ALSO, PARAMETERS, RESPONSES, SHAPES, path_parameter
from bigmodel import schemas
from bigmodel.jobs.jobtypes import JOB_TYPES

bp = Blueprint("openapi", __name__)

PROBLEM = {"description": "problem+json", "content": {"application/problem+json": {
    "schema": {"$ref": "#/components/schemas/Problem"}}}}
JSON_OK = {"content": {"application/json": {"schema": {"type": "object"}}}}
INFER_ERROR = {"description": "{\"error\": \"...\"} as the inference protocols answer errors",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferenceError"}}}}
V2_TENSOR = {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
    "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
    "datatype": {"type": "string"}, "data": {"type": "array"},
    "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"},
                                                    "binary_data": {"type": "boolean"}}}}}
# Request bodies of the inference protocols (their own formats, not pydantic schemas).
PROTOCOL_SCHEMAS: dict[str, Any] = {
    "InferenceError": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "V2InferRequest": {
        "type": "object", "required": ["inputs"],
        "description": "Open Inference Protocol request: one input 'features' FP32 [-1, n]. With the binary "
                       "tensor data extension the JSON is followed by raw little-endian tensors and its "
                       "length is sent in Inference-Header-Content-Length.",
        "properties": {"id": {"type": "string"}, "inputs": {"type": "array", "items": V2_TENSOR},
                       "outputs": {"type": "array", "items": {"type": "object"}},
                       "parameters": {"type": "object", "properties": {
                           "binary_data_output": {"type": "boolean"},
                           "timeout": {"type": "integer", "description": "microseconds"}}}}},
    "TFServingPredict": {
        "type": "object",
        "description": "TF Serving REST: 'instances' (rows as lists in column order or objects keyed by "
                       "column) or 'inputs' (rows, or an object of columns).",
        "properties": {"instances": {"type": "array"}, "inputs": {"type": ["array", "object"]},
                       "signature_name": {"type": "string"}}},
}

# (method, path, summary, request schema name or None, success status)
ROUTES: list[tuple[str, str, str, str | None, str]] = [
    ("get", "/", "The dashboard to browsers (Accept: text/html); a JSON index to API clients", None, "200"),
    ("get", "/healthz", "Liveness", None, "200"),
    ("get", "/readyz", "Readiness: Redis, store, pools and queue depths", None, "200"),
    ("get", "/metrics", "Prometheus metrics", None, "200"),
    ("get", "/openapi.json", "This document", None, "200"),
    ("post", "/v1/datasets", "Upload a CSV or Parquet dataset (multipart: file, name)", "Upload", "201"),
    ("get", "/v1/datasets", "List datasets, newest first", None, "200"),
    ("get", "/v1/datasets/{id}", "A dataset record", None, "200"),
    ("post", "/v1/jobs", "Submit a job", "JobSubmission", "202"),
    ("get", "/v1/jobs", "List jobs, newest first; or find them by the start of their id", None, "200"),
    ("get", "/v1/jobs/{id}", "A job record (?wait=S: once the job is finished, or after S seconds)", None,
     "200"),
    ("post", "/v1/jobs/{id}/cancel", "Cancel a job", None, "202"),
    ("get", "/v1/jobs/{id}/events", "Server-Sent Events of a job (?follow=0 for a JSON list)", None, "200"),
    ("get", "/v1/jobs/{id}/artifacts/{name}", "Download an artifact", None, "200"),
    ("get", "/v1/models", "List models", None, "200"),
    ("get", "/v1/models/{name}", "A model with versions, aliases and alias history", None, "200"),
    ("post", "/v1/models/{name}/aliases/{alias}", "Move an alias", "AliasMove", "200"),
    ("post", "/v1/models/{name}:predict", "TF Serving predict with the latest version", "TFServingPredict",
     "200"),
    ("post", "/v1/models/{name}/versions/{version}:predict", "TF Serving predict with a version",
     "TFServingPredict", "200"),
    ("post", "/v1/models/{name}/labels/{label}:predict", "TF Serving predict with an alias (production)",
     "TFServingPredict", "200"),
    ("get", "/v2", "Open Inference Protocol: server metadata and extensions", None, "200"),
    ("get", "/v2/health/live", "V2 liveness (public)", None, "200"),
    ("get", "/v2/health/ready", "V2 readiness: a serving process is online (public)", None, "200"),
    ("get", "/v2/models/{name}", "V2 model metadata (latest version): inputs, outputs, shapes", None, "200"),
    ("get", "/v2/models/{name}/versions/{version}", "V2 model metadata of a version or alias", None, "200"),
    ("get", "/v2/models/{name}/ready", "V2 model readiness", None, "200"),
    ("get", "/v2/models/{name}/versions/{version}/ready", "V2 readiness of a version", None, "200"),
    ("post", "/v2/models/{name}/infer", "V2 inference with the latest version", "V2InferRequest", "200"),
    ("post", "/v2/models/{name}/versions/{version}/infer", "V2 inference with a version", "V2InferRequest",
     "200"),
]


# Query parameters: (name, JSON type, description) per (method, path).
QUERY: dict[tuple[str, str], list[tuple[str, str, str]]] = {
    ("get", "/v1/jobs"): [("state", "string", "only jobs in this state"),
                          ("type", "string", "only jobs of this type"),
                          ("limit", "integer", "1-500, default 50"),
                          ("cursor", "string", "the next_cursor of the previous page"),
                          ("prefix", "string", "1-32 hex digits: the jobs whose id starts with them")],
    ("get", "/v1/jobs/{id}"): [("wait", "number", "0-60: answer once the job is finished, or after this many "
                                                  "seconds with the record as it is then")],
    ("get", "/v1/jobs/{id}/events"): [("follow", "string", "0: a JSON list of the events so far"),
                                      ("after", "string", "only events after this event id")],
}


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
    components.update(PROTOCOL_SCHEMAS)
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
        error = INFER_ERROR if speaks_inference_protocol(path) else PROBLEM
        media_types = RESPONSES.get((method, path))
        ok = {"content": {m: {"schema": s} for m, s in media_types.items()}} if media_types else JSON_OK
        op: dict[str, Any] = {"summary": summary, "responses": {status: {"description": "OK", **ok},
                                                                "4XX": error, "503": error}}
        if path.endswith("infer") or path.endswith(":predict"):
            op["responses"]["504"] = error
        params = [path_parameter(path, seg.strip("{}")) for seg in path.split("/") if seg.startswith("{")]
        params += PARAMETERS.get((method, path), [])
        for name, kind, text in QUERY.get((method, path), []):
            params.append({"name": name, "in": "query", "required": False, "description": text,
                           "schema": {"type": kind}})
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


def routes_table() -> str:
    """The routes as a Markdown table (docs/api.md holds a copy; a test keeps the two equal)."""
    lines = ["| method | path | what it does | query |", "| --- | --- | --- | --- |"]
    for method, path, summary, _, _ in ROUTES:
        query = ", ".join(f"`{name}`" for name, _, _ in QUERY.get((method, path), []))
        lines.append(f"| {method.upper()} | `{path}` | {summary} | {query} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m api.openapi: the routes table of docs/api.md
    print(routes_table())


@bp.get("/openapi.json")
def openapi() -> Any:
    """GET /openapi.json."""
    return jsonify(document())
