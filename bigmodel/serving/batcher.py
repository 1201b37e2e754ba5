"""Micro-batching: the requests taken together, grouped per model version, one forward pass per group.

Each caller gets exactly its own rows back (outputs are split at the same offsets the inputs were
stacked at); a request that cannot be served (wrong width, NaN, unknown version) fails alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bigmodel.errors import BigModelError
from bigmodel.serving.queue import InferReply, InferRequest

log = logging.getLogger(__name__)

Group = tuple[str, str, int]


@dataclass
class BatchOutcome:
    """What one round produced: the replies to send, the requests per forward pass, outcome counts."""

    replies: list[tuple[InferRequest, InferReply]] = field(default_factory=list)
    passes: list[int] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def reply(self, request: InferRequest, reply: InferReply) -> None:
        """Record the answer to one request."""
        self.replies.append((request, reply))
        self.outcomes["ok" if reply.status == 200 else "client_error" if reply.status < 500 else "error"] += 1


def _failure(exc: Exception) -> InferReply:
    """The reply for a request that failed with `exc` (bigmodel errors carry their status)."""
    if isinstance(exc, BigModelError):
        return InferReply(status=exc.status, error=exc.message)
    return InferReply(status=500, error="the serving process failed on this request; it has been logged")


def passes(requests: list[InferRequest], max_rows: int) -> list[list[InferRequest]]:
    """Consecutive runs of requests with at most `max_rows` rows each (a bigger request runs alone)."""
    out: list[list[InferRequest]] = []
    rows = 0
    for request in requests:
        n = len(request.x)
        if out and rows + n <= max_rows:
            out[-1].append(request)
            rows += n
        else:
            out.append([request])
            rows = n
    return out


class Batcher:
    """Serve a list of requests with predictors from `get(tenant, model, version)`."""

    def __init__(self, get: Callable[[str, str, int], Any], max_rows: int) -> None:
        self.get = get
        self.max_rows = max_rows

    def run(self, requests: list[InferRequest], now: float) -> BatchOutcome:
        """Answer every live request; requests whose deadline passed are dropped, not computed."""
        outcome = BatchOutcome()
        groups: dict[Group, list[InferRequest]] = {}
        for request in requests:
            if request.deadline < now:
                outcome.outcomes["expired"] += 1  # its caller already answered 504
                continue
            groups.setdefault(request.group, []).append(request)
        for group, members in groups.items():
            self._serve_group(group, members, outcome)
        return outcome

    def _serve_group(self, group: Group, members: list[InferRequest], outcome: BatchOutcome) -> None:
        try:
            predictor = self.get(*group)
        except Exception as exc:
            if not isinstance(exc, BigModelError):
                log.exception("loading %s/%s v%s failed", *group)
            for request in members:
                outcome.reply(request, _failure(exc))
            return
        good = []
        for request in members:
            try:
                predictor.check(request.x)
            except BigModelError as exc:
                outcome.reply(request, _failure(exc))  # this request alone: the others still run
                continue
            good.append(request)
        for batch in passes(good, self.max_rows):
            self._forward(predictor, batch, outcome)

    def _forward(self, predictor: Any, batch: list[InferRequest], outcome: BatchOutcome) -> None:
        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([r.x for r in batch])
            y = predictor.forward(x)
        except Exception as exc:
            log.exception("a forward pass of %d requests failed", len(batch))
            for request in batch:
                outcome.reply(request, _failure(exc))
            return
        outcome.passes.append(len(batch))
        offsets = np.cumsum([len(r.x) for r in batch])[:-1]
        for request, rows in zip(batch, np.split(y, offsets), strict=True):
            outcome.reply(request, InferReply(outputs=rows))
