"""Time as bigmodel writes it: RFC 3339 UTC with milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current time as RFC 3339 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
