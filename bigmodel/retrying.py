"""Retries for transient failures only (Redis and the store), with exponential backoff and jitter."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import redis
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from bigmodel.errors import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

# A Redis that is down, restarting (BusyLoadingError is a ConnectionError) or slow, a store that
# failed to write: worth trying again. Anything else is a real answer and is not retried.
TRANSIENT: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, StoreError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether an error may go away by itself (a connection, not a bad request)."""
    return isinstance(exc, TRANSIENT)


def retry_transient(call: Callable[[], T], *, within: float = 60.0, what: str = "a call") -> T:
    """Run `call`, retrying transient errors with backoff and jitter for up to `within` seconds."""

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s failed (%s); retry %d", what, type(exc).__name__, state.attempt_number)

    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.1, max=5.0),
        stop=stop_after_delay(within),
        before_sleep=note,
        reraise=True,
    )
    return retrying(call)
