"""Rebuilding Redis listing indexes from the store, where the store holds the truth.

A listing (a tenant's jobs, its datasets) is a sorted set in Redis. If Redis loses its data, the
set is gone but the records are still in the store; the first listing after that finds no marker
key and rebuilds the set from the records. A marker is only ever written after a rebuild, so a
fresh Redis in front of an old store rebuilds too. Two processes rebuilding at once write the same
members with the same scores: harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis

from bigmodel.errors import BigModelError
from bigmodel.store import Store

log = logging.getLogger(__name__)


def epoch_of(timestamp: Any) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (0 when it is missing or malformed)."""
    try:
        return datetime.fromisoformat(str(timestamp)).timestamp()
    except ValueError:
        return 0.0


def ensure_index(client: redis.Redis, index_key: str, store: Store, folder: str, record_file: str,
                 score: Callable[[dict[str, Any]], float], limit: int = 100_000) -> int:
    """Rebuild `index_key` from `<folder>/<id>/<record_file>` in the store unless it was built already.

    Returns how many entries were written (0 when the index was already there).
    """
    marker = f"{index_key}:built"
    if client.exists(marker):
        return 0
    entries: dict[str, float] = {}
    for name in store.listdir(folder):
        try:
            record = store.read_json(f"{folder}/{name}/{record_file}")
        except (OSError, ValueError, BigModelError):  # being written, damaged, or not an id folder
            continue
        if isinstance(record, dict) and record.get("id") == name:
            entries[name] = score(record)
    newest = dict(sorted(entries.items(), key=lambda kv: kv[1], reverse=True)[:limit])
    pipe = client.pipeline(transaction=False)
    if newest:
        pipe.zadd(index_key, newest)
    pipe.set(marker, 1)
    pipe.execute()
    if newest:
        log.info("rebuilt %s from the store: %d entries", index_key, len(newest))
    return len(newest)
