"""Reading request bodies and query strings with clear 4xx answers."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from bigmodel.errors import InvalidRequest, PayloadTooLarge, ValidationFailed
from bigmodel.jobs.jobtypes import errors_of
from bigmodel.limits import BOUNDS
from bigmodel.names import is_event_id

M = TypeVar("M", bound=BaseModel)


def json_body(limit: int | None = None) -> dict[str, Any]:
    """The request's JSON object (at most `limit` bytes), or a 400/413 that says what is wrong."""
    if not request.is_json:
        raise InvalidRequest("send a JSON body with Content-Type: application/json")
    if limit is None:
        from api.services import services

        limit = services().settings.limits.json_bytes
    # JSON bodies have their own limit, far below the upload limit: a job's params go into Redis.
    setting = BOUNDS["json_bytes"].setting
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the JSON body is {request.content_length} bytes; the limit is {limit} "
                              f"(the server's {setting})")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"the JSON body is over the limit of {limit} bytes (the server's {setting})")
    try:
        body = json.loads(raw, parse_constant=_no_constant) if raw else None
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if body is None:
        raise InvalidRequest("the body is not valid JSON: it is empty or null")
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse(model: type[M], body: dict[str, Any]) -> M:
    """Validate a body against a schema; 422 with every problem listed."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed("the request body is invalid", errors=errors_of(exc, ("body",))) from None


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within bounds."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter {name!r} must be an integer") from None
    if not low <= value <= high:
        raise InvalidRequest(f"query parameter {name!r} must be between {low} and {high}")
    return value


def float_arg(name: str, default: float, low: float, high: float) -> float:
    """A number query parameter within bounds."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"query parameter {name!r} must be a number") from None
    if not low <= value <= high:  # also refuses nan
        raise InvalidRequest(f"query parameter {name!r} must be between {low:g} and {high:g}")
    return value


def cursor_arg() -> str | None:
    """The opaque pagination cursor (a finite number, as earlier pages give it)."""
    raw = request.args.get("cursor")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or len(raw) > 64:
        raise InvalidRequest(f"invalid cursor {raw[:64]!r}: pass the next_cursor of an earlier page")
    return repr(value)


def event_id_arg() -> str:
    """Where an event stream resumes: Last-Event-ID or ?after=, a stream id such as '1700000000000-0'."""
    header = request.headers.get("Last-Event-ID")
    raw = header or request.args.get("after") or "0-0"
    if not is_event_id(raw):
        source = "Last-Event-ID" if header else "after"
        raise InvalidRequest(f"invalid {source} {raw[:64]!r}: expected an event id such as '1700000000000-0'")
    return raw
