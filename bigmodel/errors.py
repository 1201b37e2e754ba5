"""One exception root for bigmodel; each subclass carries its HTTP status and its snake_case error type."""

from __future__ import annotations

from typing import Any


class BigModelError(Exception):
    """Root of every error bigmodel raises on purpose."""

    status: int = 500
    title: str = "Internal error"
    code: str = "internal_error"
    retryable: bool = False  # whether the same request may succeed later without changes

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    @property
    def slug(self) -> str:
        """The stable snake_case name of the error type (problem+json `type`, a job's `error.type`)."""
        return self.code


class InvalidRequest(BigModelError):
    """The request is malformed or its values are not acceptable."""

    status = 400
    title = "Invalid request"
    code = "invalid_input"


class ValidationFailed(InvalidRequest):
    """The request body did not match its schema; `errors` lists each problem."""

    status = 422
    title = "Validation failed"
    code = "validation_failed"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, errors=errors or [])
        self.errors = errors or []


class DataError(InvalidRequest):
    """A dataset or a row of data cannot be used as asked (unreadable, empty, wrong column...)."""

    title = "Unusable data"
    code = "data_error"


class PayloadTooLarge(InvalidRequest):
    """A body or an upload is over the configured size limit."""

    status = 413
    title = "Payload too large"
    code = "payload_too_large"


class Unauthorized(BigModelError):
    """No valid bearer token was presented."""

    status = 401
    title = "Unauthorized"
    code = "unauthorized"


class Forbidden(BigModelError):
    """The caller may not do this from where it is (for example a non-loopback client of an open API)."""

    status = 403
    title = "Forbidden"
    code = "forbidden"


class NotFound(BigModelError):
    """The thing asked for does not exist (or belongs to another tenant)."""

    status = 404
    title = "Not found"
    code = "not_found"


class Conflict(BigModelError):
    """The request conflicts with the current state (for example cancelling a finished job)."""

    status = 409
    title = "Conflict"
    code = "conflict"


class JobInterrupted(BigModelError):
    """Raised inside a running job at a checkpoint when it must stop before its end."""

    status = 409
    title = "Job interrupted"
    code = "interrupted"


class JobCancelled(JobInterrupted):
    """Raised inside a running job when its cancel flag is seen at a checkpoint."""

    title = "Job cancelled"
    code = "cancelled"


class HandOver(JobInterrupted):
    """Raised inside a running job when its worker is stopping: the job goes back to its queue."""

    title = "Job handed over"
    code = "handed_over"


class FannedOut(JobInterrupted):
    """Raised by a running job that handed its work to child jobs: it runs again when they have ended."""

    title = "Job fanned out"
    code = "fanned_out"


class Superseded(JobInterrupted):
    """Raised inside a running job whose attempt is no longer current: it must commit nothing."""

    title = "Attempt superseded"
    code = "superseded"


class ShardFailed(BigModelError):
    """A child job of a fanned-out job (a shard of a batch predict) failed or was cancelled."""

    title = "A shard failed"
    code = "shard_failed"


class WorkerLost(BigModelError):
    """The job's worker died (or froze past its lease) too many times; the job is not tried again."""

    title = "Worker lost"
    code = "worker_lost"
    retryable = True


class TimeLimitExceeded(BigModelError):
    """The job ran past its time limit."""

    title = "Time limit exceeded"
    code = "time_limit"


class TrialsFailed(BigModelError):
    """No trial of a sweep succeeded with the metric it ranks by (each trial's error is in the result)."""

    title = "Every trial failed"
    code = "trials_failed"


class ServiceUnavailable(BigModelError):
    """A dependency (Redis, the queue, a serving process) does not answer; try again later."""

    status = 503
    title = "Service unavailable"
    code = "unavailable"
    retryable = True


class RedisUnavailable(ServiceUnavailable):
    """Redis (the job database and broker) does not answer."""

    title = "Redis unavailable"


class QuotaExceeded(BigModelError):
    """A tenant holds as many queued jobs as it may; it may submit again once some of them ran."""

    status = 429
    title = "Quota exceeded"
    code = "quota_exceeded"
    retryable = True


class AnswerTimeout(BigModelError):
    """A synchronous request (online inference) got no answer within its timeout."""

    status = 504
    title = "Gateway timeout"
    code = "timeout"
    retryable = True


class StoreError(ServiceUnavailable):
    """The store could not be read or written."""

    title = "Store unavailable"
    code = "store_error"


class ConfigError(BigModelError):
    """The settings are inconsistent or unsafe."""

    title = "Configuration error"
    code = "config_error"
