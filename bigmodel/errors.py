"""One exception root for bigmodel; each subclass carries the HTTP status it maps to."""

from __future__ import annotations

from typing import Any


class BigModelError(Exception):
    """Root of every error bigmodel raises on purpose."""

    status: int = 500
    title: str = "Internal error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    @property
    def slug(self) -> str:
        """A short, stable name for the error type (used in problem+json and job errors)."""
        return type(self).__name__


class InvalidRequest(BigModelError):
    """The request is malformed or its values are not acceptable."""

    status = 400
    title = "Invalid request"


class ValidationFailed(InvalidRequest):
    """The request body did not match its schema; `errors` lists each problem."""

    status = 422
    title = "Validation failed"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, errors=errors or [])
        self.errors = errors or []


class DataError(InvalidRequest):
    """A dataset or a row of data cannot be used as asked (unreadable, empty, wrong column...)."""

    title = "Unusable data"


class PayloadTooLarge(InvalidRequest):
    """An upload is over the configured size limit."""

    status = 413
    title = "Payload too large"


class Unauthorized(BigModelError):
    """No valid bearer token was presented."""

    status = 401
    title = "Unauthorized"


class NotFound(BigModelError):
    """The thing asked for does not exist (or belongs to another tenant)."""

    status = 404
    title = "Not found"


class Conflict(BigModelError):
    """The request conflicts with the current state (for example cancelling a finished job)."""

    status = 409
    title = "Conflict"


class JobCancelled(BigModelError):
    """Raised inside a running job when its cancel flag is seen at a checkpoint."""

    status = 409
    title = "Job cancelled"


class ServiceUnavailable(BigModelError):
    """A dependency (Redis, the store) does not answer; try again later."""

    status = 503
    title = "Service unavailable"


class ConfigError(BigModelError):
    """The settings are inconsistent or unsafe."""

    title = "Configuration error"
