"""Reading request bodies and query strings with clear 4xx answers."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from bigmodel.errors import InvalidRequest, ValidationFailed
from bigmodel.jobs.jobtypes import errors_of

M = TypeVar("M", bound=BaseModel)


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400/415 that says what is wrong."""
    if not request.is_json:
        raise InvalidRequest("send a JSON body with Content-Type: application/json")
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidRequest("the body is not valid JSON")
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


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
    """The opaque pagination cursor, checked to be a number."""
    raw = request.args.get("cursor")
    if not raw:
        return None
    try:
        float(raw)
    except ValueError:
        raise InvalidRequest("invalid cursor") from None
    return raw
