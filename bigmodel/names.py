"""The one place for the shapes of names and ids that users give and that become Redis keys or store paths."""

from __future__ import annotations

import re

from bigmodel.errors import InvalidRequest

# Models, aliases, dataset names and tenants: one pattern, so a name valid in one place is valid in all.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
DATASET_ID_PATTERN = r"^[0-9a-f]{64}$"
# One segment of a store path (artifact files such as 'predictions.parquet', 'epoch=3').
SEGMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$"

_NAME = re.compile(NAME_PATTERN)
_JOB_ID = re.compile(JOB_ID_PATTERN)
_DATASET_ID = re.compile(DATASET_ID_PATTERN)
_SEGMENT = re.compile(SEGMENT_PATTERN)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def is_name(value: object) -> bool:
    """Whether a value is a valid user-given name (1-64 letters, digits, '.', '_', '-'; no '..')."""
    return isinstance(value, str) and bool(_NAME.match(value)) and ".." not in value


def check_name(value: object, what: str = "name") -> str:
    """Return value if it is a valid name, else InvalidRequest saying what a name may hold."""
    if not is_name(value):
        raise InvalidRequest(
            f"invalid {what} {value!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '..')"
        )
    return value  # type: ignore[return-value]


def safe_name(value: str, fallback: str) -> str:
    """A valid name made from free text (an uploaded file's name), or fallback when nothing is left."""
    cleaned = _UNSAFE.sub("_", value).strip("._-")[:64].replace("..", "_")
    return cleaned if is_name(cleaned) else fallback


def is_job_id(value: object) -> bool:
    """Whether a value has the shape of a job id (32 hex digits)."""
    return isinstance(value, str) and bool(_JOB_ID.match(value))


def is_dataset_id(value: object) -> bool:
    """Whether a value has the shape of a dataset id (64 hex digits)."""
    return isinstance(value, str) and bool(_DATASET_ID.match(value))


def check_segment(value: object, what: str = "name") -> str:
    """Return value if it is safe as one path segment (no slashes, no '..', no leading dot)."""
    if not isinstance(value, str) or not _SEGMENT.match(value) or ".." in value:
        raise InvalidRequest(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '.', '_', '-' or '=', "
            "starting with a letter or digit"
        )
    return value


EVENT_ID_PATTERN = r"^[0-9]{1,19}(-[0-9]{1,19})?$"  # 64-bit parts, as Redis streams take them
_EVENT_ID = re.compile(EVENT_ID_PATTERN)


def is_event_id(value: object) -> bool:
    """Whether a value has the shape of a job event id (a Redis stream id such as '1700000000000-0')."""
    return isinstance(value, str) and bool(_EVENT_ID.match(value))
