"""The per-process model cache: compiled predictors kept by (tenant, name, version), LRU, bounded twice."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Key = tuple[str, str, int]  # (tenant, model name, version): versions never change once published


@dataclass(frozen=True)
class CacheStats:
    """What the cache holds and how it has done."""

    items: int
    nbytes: int
    hits: int
    misses: int
    evictions: int


class ModelCache:
    """Loaded predictors, least recently used first out when over `max_items` or `max_bytes`.

    A version is immutable, so a cached predictor never goes stale; aliases are resolved by the
    caller on each request, so moving `production` takes effect at once while old versions stay warm.
    The newest entry is always kept, even alone over `max_bytes` (a cache that cannot hold the model
    being served would reload it on every request).
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.pid = os.getpid()
        self._items: OrderedDict[Key, Any] = OrderedDict()
        self._sizes: dict[Key, int] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Key, load: Callable[[], Any]) -> Any:
        """The cached predictor for `key`, loading it with `load()` on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            # Loading under the lock: two threads asking for the same new version load it once.
            predictor = load()
            self._items[key] = predictor
            self._sizes[key] = int(getattr(predictor, "nbytes", 0))
            self._evict()
            return predictor

    def _evict(self) -> None:
        while len(self._items) > 1 and (len(self._items) > self.max_items or self.nbytes > self.max_bytes):
            key, _ = self._items.popitem(last=False)
            self._sizes.pop(key, None)
            self.evictions += 1
            log.info("model cache: evicted %s/%s v%s", *key)

    def keys(self) -> list[Key]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes of weights held."""
        return sum(self._sizes.values())

    def stats(self) -> CacheStats:
        """Counts for logs and the serving process's heartbeat."""
        with self._lock:
            return CacheStats(len(self._items), self.nbytes, self.hits, self.misses, self.evictions)


_CACHES: dict[int, ModelCache] = {}


def process_cache(max_items: int, max_mb: int) -> ModelCache:
    """This process's cache, made on first use: a forked child gets its own, never its parent's models."""
    pid = os.getpid()
    if pid not in _CACHES:
        _CACHES.clear()  # a parent's cache copied by fork: its tensors are not ours to use
        _CACHES[pid] = ModelCache(max_items, max_mb * 1024 * 1024)
    return _CACHES[pid]
