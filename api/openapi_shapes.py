"""What the OpenAPI document says about answers and parameters: response schemas, media types, patterns.

Kept next to api/openapi.py (which lists the routes) so that a fuzzer reading /openapi.json checks
real shapes: a job record, a page of jobs, an event list, a stream, bytes, Prometheus text.
"""

from __future__ import annotations

from typing import Any

from bigmodel.jobs.waiting import Reason
from bigmodel.names import DATASET_ID_PATTERN, EVENT_ID_PATTERN, JOB_ID_PATTERN, NAME_PATTERN

STR = {"type": "string"}
NULL_STR = {"type": ["string", "null"]}
INT = {"type": "integer"}
OBJ = {"type": "object"}


def ref(name: str) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def page_of(name: str) -> dict[str, Any]:
    """A page of a listing: items and the cursor of the next page (null on the last)."""
    return {"type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": ref(name)}, "next_cursor": NULL_STR}}


SHAPES: dict[str, dict[str, Any]] = {
    "Job": {
        "type": "object", "required": ["id", "type", "state", "attempts", "created_at"],
        "properties": {
            "id": {"type": "string", "pattern": JOB_ID_PATTERN}, "type": STR,
            "state": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "queue": STR, "priority": INT, "params": OBJ, "resources": OBJ,
            "progress": {"type": ["object", "null"]}, "attempts": INT,
            "handovers": {"type": ["integer", "null"]},
            "worker": NULL_STR, "created_at": STR, "started_at": NULL_STR, "finished_at": NULL_STR,
            "result": {}, "cancel_requested": {"type": ["boolean", "null"]},
            # Why a queued job waits (null otherwise): bigmodel.jobs.waiting's one shape.
            "waiting": {"anyOf": [{"type": "null"}, {
                "type": "object", "required": ["reason", "message"],
                "properties": {"reason": {"enum": [r.value for r in Reason]}, "message": STR,
                               "position": {"type": ["integer", "null"]},
                               "workers_online": {"type": ["integer", "null"]}}}]},
            "usage": {"type": ["object", "null"]},
            # Fan-out: a child names its parent; a parent lists its children (null until it fans out).
            "parent": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": JOB_ID_PATTERN}]},
            "children": {"anyOf": [{"type": "null"}, {"type": "array", "items": {
                "type": "string", "pattern": JOB_ID_PATTERN}}]},
            "error": {"anyOf": [{"type": "null"}, {"type": "object", "required": ["type", "message"],
                                                   "properties": {"type": STR, "message": STR}}]},
            "artifacts": {"type": "array", "items": {
                "type": "object", "required": ["name", "uri", "size_bytes"],
                "properties": {"name": STR, "uri": STR, "size_bytes": INT, "attempt": INT}}},
        },
    },
    "JobList": page_of("Job"),
    "EventList": {"type": "object", "required": ["items"], "properties": {"items": {
        "type": "array", "items": {"type": "object", "required": ["id", "type", "ts", "data"],
                                   "properties": {"id": STR, "type": STR, "ts": STR, "data": OBJ}}}}},
    # One Server-Sent Event: `event` is state, progress or log (`data` the JSON event), or end.
    "StreamEvent": {"type": "object", "properties": {"event": {"enum": ["state", "progress", "log", "end"]},
                                                     "data": STR, "id": {"type": "string",
                                                                         "pattern": EVENT_ID_PATTERN}}},
    "Dataset": {"type": "object", "required": ["id", "name", "rows", "columns"],
                "properties": {"id": STR, "name": STR, "rows": INT, "columns": {"type": "array"}}},
    "DatasetList": page_of("Dataset"),
    "ModelSummary": {"type": "object", "required": ["name", "aliases"],
                     "properties": {"name": STR, "aliases": OBJ}},
    "ModelList": {"type": "object", "required": ["items"],
                  "properties": {"items": {"type": "array", "items": ref("ModelSummary")}}},
    "Model": {"type": "object", "required": ["name", "versions", "aliases", "alias_history"],
              "properties": {"name": STR, "versions": {"type": "array"}, "aliases": OBJ,
                             "alias_history": {"type": "array"}}},
    "AliasMoved": {"type": "object", "required": ["entry", "aliases"],
                   "properties": {"entry": OBJ, "aliases": OBJ}},
}

# (method, path) -> {media type: schema} of the success answer; a JSON object when absent.
RESPONSES: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("get", "/metrics"): {"text/plain": STR},
    ("post", "/v1/datasets"): {"application/json": ref("Dataset")},
    ("get", "/v1/datasets"): {"application/json": ref("DatasetList")},
    ("get", "/v1/datasets/{id}"): {"application/json": ref("Dataset")},
    ("post", "/v1/jobs"): {"application/json": ref("Job")},
    ("get", "/v1/jobs"): {"application/json": ref("JobList")},
    ("get", "/v1/jobs/{id}"): {"application/json": ref("Job")},
    ("post", "/v1/jobs/{id}/cancel"): {"application/json": ref("Job")},
    ("get", "/v1/jobs/{id}/events"): {"text/event-stream": ref("StreamEvent"),
                                      "application/json": ref("EventList")},
    ("get", "/v1/jobs/{id}/artifacts/{name}"): {"application/octet-stream": {"type": "string",
                                                                             "format": "binary"}},
    ("get", "/v1/models"): {"application/json": ref("ModelList")},
    ("get", "/v1/models/{name}"): {"application/json": ref("Model")},
    ("post", "/v1/models/{name}/aliases/{alias}"): {"application/json": ref("AliasMoved")},
}

# (method, path) -> other success statuses, with the same body as the main one.
ALSO: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/v1/jobs"): {"200": "replay of an idempotent submission: the first job"},
    ("post", "/v1/datasets"): {"200": "the same bytes were stored before: that dataset"},
}

# The shape of each path parameter, by the path it appears in.
PATH_PATTERNS: dict[tuple[str, str], str] = {
    ("/v1/jobs/", "id"): JOB_ID_PATTERN,
    ("/v1/datasets/", "id"): DATASET_ID_PATTERN,
    ("/v1/models/", "name"): NAME_PATTERN,
    ("/v1/models/", "alias"): NAME_PATTERN,
}

LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
CURSOR = {"name": "cursor", "in": "query", "schema": STR,
          "description": "next_cursor of the previous page"}

# (method, path) -> query and header parameters.
PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("post", "/v1/jobs"): [{"name": "Idempotency-Key", "in": "header",
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
    ("get", "/v1/jobs"): [
        {"name": "state", "in": "query",
         "schema": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]}},
        {"name": "type", "in": "query", "schema": STR}, LIMIT, CURSOR],
    ("get", "/v1/datasets"): [LIMIT, CURSOR],
    ("get", "/v1/jobs/{id}/events"): [
        {"name": "follow", "in": "query", "schema": {"enum": ["0", "1"]},
         "description": "0: the events so far as a JSON list; 1 (default): Server-Sent Events"},
        {"name": "after", "in": "query", "schema": {"type": "string", "pattern": EVENT_ID_PATTERN}},
        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string", "pattern": EVENT_ID_PATTERN}}],
}


def path_parameter(path: str, name: str) -> dict[str, Any]:
    """A path parameter with the pattern its ids or names follow."""
    pattern = next((p for (prefix, n), p in PATH_PATTERNS.items() if path.startswith(prefix) and n == name),
                   None)
    schema = {"type": "string", **({"pattern": pattern} if pattern else {})}
    return {"name": name, "in": "path", "required": True, "schema": schema}
