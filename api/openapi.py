"""The OpenAPI 3.1 document, generated from the same pydantic schemas that validate requests."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

import bigmodel
from bigmodel import schemas
from bigmodel.jobs.jobtypes import JOB_TYPES

bp = Blueprint("openapi", __name__)

PROBLEM = {"description": "problem+json", "content": {"application/problem+json": {
    "schema": {"$ref": "#/components/schemas/Problem"}}}}
JSON_OK = {"content": {"application/json": {"schema": {"type": "object"}}}}

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
    paths: dict[str, Any] = {}
    for method, path, summary, body, status in ROUTES:
        op: dict[str, Any] = {"summary": summary, "responses": {status: {"description": "OK", **JSON_OK},
                                                                "4XX": PROBLEM, "503": PROBLEM}}
        params = [seg.strip("{}") for seg in path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                for p in params]
        for name, kind, text in QUERY.get((method, path), []):
            op.setdefault("parameters", []).append({"name": name, "in": "query", "required": False,
                                                    "description": text, "schema": {"type": kind}})
        if body:
            media = "multipart/form-data" if body == "Upload" else "application/json"
            op["requestBody"] = {"required": True, "content": {
                media: {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
        if path == "/v1/jobs" and method == "post":
            op["parameters"] = [{"name": "Idempotency-Key", "in": "header", "required": False,
                                 "schema": {"type": "string"}}]
            op["responses"]["200"] = {"description": "replay of an idempotent submission", **JSON_OK}
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
