"""The API's side of online inference, protocol-neutral: resolve a version, check rows, ask, wait.

Both protocols' routes are thin over this (as KServe's endpoints are over its dataplane). Nothing
here loads a model: the API only knows what the registry keeps in Redis about each version (its
features and transform), which is enough to refuse a bad request before it reaches a serving process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import redis

from bigmodel.config import Settings
from bigmodel.connections import redis_client
from bigmodel.errors import (
    AnswerTimeout,
    BigModelError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationFailed,
)
from bigmodel.limits import BOUNDS
from bigmodel.ml import transform as encoding
from bigmodel.ml.registry import Registry
from bigmodel.serving.queue import InferQueue
from bigmodel.store import Store

META_CACHE_SIZE = 1024
_BY_STATUS: dict[int, type[BigModelError]] = {400: InvalidRequest, 404: NotFound, 503: ServiceUnavailable}


def output_width(meta: dict[str, Any]) -> int:
    """Outputs per row: class probabilities for multiclass, else one (P(class 1) or the value)."""
    transform = meta["transform"]
    if transform.get("task") == "multiclass":
        return len(transform.get("label_classes") or [])
    return 1


def _shape_error(expected: int, got: tuple[int, ...], names: list[str]) -> InvalidRequest:
    shown = ", ".join(names[:10]) + (f", ... {len(names) - 10} more" if len(names) > 10 else "")
    return InvalidRequest(f"expected shape [-1, {expected}] ({shown}), got {list(got)}")


class DataPlane:
    """Resolve, check and forward inference requests to the serving processes, for any protocol."""

    def __init__(self, client: redis.Redis, store: Store, settings: Settings) -> None:
        self.r = client
        self.store = store
        self.settings = settings
        self.queue = InferQueue(client)
        # The reply wait blocks up to the request timeout: a client whose reads may last that long.
        self.waits = redis_client(settings, timeout=settings.infer_timeout + 5)
        # Published versions never change: their serving metadata is kept here once read.
        self._meta: OrderedDict[tuple[str, str, int], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def check_body(self, length: int | None) -> None:
        """413 for a body over the body bound, before it is read.

        A request crosses Redis whole (as base64): bigger inputs belong in a `predict` job on a dataset.
        """
        limit = self.settings.limits.body_bytes
        if length is not None and length > limit:
            raise PayloadTooLarge(f"the body is {length} bytes; online inference takes at most {limit} "
                                  f"(the server's {BOUNDS['body_bytes'].setting}; use a predict job on "
                                  "a dataset for more)")

    def ready(self) -> bool:
        """Whether a serving process is online (Redis answering is implied)."""
        return self.queue.servers() > 0

    def require_server(self) -> None:
        """503 unless a serving process is online."""
        if not self.ready():
            raise ServiceUnavailable("no serving process is online (start `bigmodel worker --pool infer`)")

    def resolve(self, tenant: str, name: str, version: str | int | None) -> dict[str, Any]:
        """The serving metadata of a version number, alias or `latest` (None); 404 when there is none.

        An alias or `latest` costs one Redis round trip (it may have moved); a number none once seen.
        """
        registry = Registry(self.r, self.store, tenant)
        ref = "latest" if version in (None, "") else version
        if isinstance(ref, int) or str(ref).isdigit():
            number = int(ref)
        else:
            number = registry.resolve_number(name, ref)
        with self._lock:
            cached = self._meta.get((tenant, name, number))
        if cached is not None:
            return cached
        meta = registry.serving_meta(name, number)
        with self._lock:
            self._meta[(tenant, name, number)] = meta
            while len(self._meta) > META_CACHE_SIZE:
                self._meta.popitem(last=False)
        return meta

    def versions(self, tenant: str, name: str) -> list[int]:
        """Every published version of a model."""
        return Registry(self.r, self.store, tenant).version_numbers(name)

    def check_features(self, meta: dict[str, Any], x: np.ndarray) -> np.ndarray:
        """The encoded rows as float32 [n, features]; 400 naming the expected shape otherwise."""
        features = list(meta["transform"]["features"])
        if x.ndim != 2 or x.shape[1] != len(features) or x.shape[0] == 0:
            raise _shape_error(len(features), tuple(x.shape), features)
        rows = self.settings.limits.inline_rows
        if x.shape[0] > rows:
            raise ValidationFailed(f"{x.shape[0]} rows is over the limit of {rows} rows in one request (the "
                                   f"server's {BOUNDS['inline_rows'].setting}); use a predict job on a "
                                   "dataset for more")
        x = np.asarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise InvalidRequest("features contain NaN or infinite values")
        return x

    def encode_rows(self, meta: dict[str, Any], rows: list[Any] | None,
                    columns: dict[str, Any] | None = None) -> np.ndarray:
        """Raw rows (lists in column order or objects by column) or columns -> the encoded matrix."""
        transform = meta["transform"]
        names: list[str] = list(transform["columns"])
        rows = _columns_to_rows(columns) if columns is not None else (rows or [])
        bad = next((row for row in rows if isinstance(row, list) and len(row) != len(names)), None)
        if bad is not None:
            raise _shape_error(len(names), (len(rows), len(bad)), names)
        fast = _numeric_rows(rows, transform)
        if fast is not None:
            return fast
        return encoding.encode(encoding.rows_to_frame(rows, transform), transform)

    def infer(self, tenant: str, name: str, meta: dict[str, Any], x: np.ndarray,
              timeout: float | None = None) -> np.ndarray:
        """Outputs for checked rows of a resolved version: queued, batched by a server, waited for."""
        limit = min(timeout or self.settings.infer_timeout, self.settings.infer_timeout)
        request = self.queue.new_request(tenant, name, int(meta["version"]), x, limit)
        if not self.queue.submit(request):
            raise ServiceUnavailable("no serving process is online (start `bigmodel worker --pool infer`)")
        reply = self.queue.wait(request, self.waits)
        if reply is None:
            raise AnswerTimeout(f"no answer within {limit:g} s; the serving processes are busy or stuck")
        if reply.outputs is None:
            raise _BY_STATUS.get(reply.status, BigModelError)(reply.error)
        return reply.outputs


def _columns_to_rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """TF Serving's columnar `inputs` ({column: [values]}) as row objects."""
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if len(lengths) != 1 or -1 in lengths or 0 in lengths:
        raise InvalidRequest("each column of 'inputs' must be a non-empty list, all of the same length")
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _numeric_rows(rows: list[Any], transform: dict[str, Any]) -> np.ndarray | None:
    """Rows of plain numbers for an all-numeric model, straight into a matrix (the common case), else None.

    Anything else (objects, nulls to impute, strings, booleans, categories) takes the general encoder,
    which also words the errors.
    """
    if list(transform["features"]) != list(transform["columns"]) or transform.get("categorical"):
        return None
    for row in rows:
        if not isinstance(row, list) or not all(type(v) in (int, float) for v in row):
            return None
    x = np.asarray(rows, dtype=np.float32)
    return x if np.all(np.isfinite(x)) else None
