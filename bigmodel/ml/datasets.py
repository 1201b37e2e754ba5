"""Datasets: validated uploads stored content-addressed as Parquet, plus processed datasets."""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any

import pandas as pd
import redis

from bigmodel.clock import now_iso
from bigmodel.errors import DataError, NotFound, PayloadTooLarge
from bigmodel.ml import data
from bigmodel.names import is_dataset_id, safe_name
from bigmodel.rebuild import ensure_index, epoch_of
from bigmodel.store import Store

SPLIT_COLUMN = "__split__"


def sha256_hex(payload: bytes) -> str:
    """The hex sha256 of some bytes."""
    return hashlib.sha256(payload).hexdigest()


def processed_id(source: str, params: dict[str, Any]) -> str:
    """The id of a processed dataset: same source and same params give the same id (a cache key)."""
    canonical = json.dumps({"source": source, "params": params}, sort_keys=True, separators=(",", ":"))
    return sha256_hex(canonical.encode())


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    """Serialise a frame as Parquet bytes."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, engine="pyarrow")
    return buf.getvalue()


class Datasets:
    """A tenant's datasets: records in the store, an index in Redis for listing newest first."""

    def __init__(self, client: redis.Redis, store: Store, tenant: str, prefix: str = "bm") -> None:
        self.r = client
        self.tenant = tenant
        self.store = store.tenant(tenant)
        self.index = f"{prefix}:t:{tenant}:datasets"

    def ingest(self, payload: bytes, filename: str | None, name: str | None,
               max_bytes: int) -> tuple[dict[str, Any], bool]:
        """Validate and store an upload; returns (record, created). Nothing is written unless it is valid."""
        if len(payload) > max_bytes:
            raise PayloadTooLarge(f"the file is {len(payload)} bytes; the limit is {max_bytes}")
        digest = sha256_hex(payload)
        existing = self._read(digest)
        if existing is not None:
            return existing, False
        frame, fmt = data.read_table(payload, filename=filename)
        default_name = safe_name((filename or "").rsplit(".", 1)[0], digest[:12])
        record = {
            "id": digest, "name": name or default_name, "kind": "raw", "format": fmt,
            "rows": int(len(frame)), "columns": data.describe_columns(frame), "sha256": digest,
            "size_bytes": len(payload), "created_at": now_iso(), "tenant": self.tenant,
        }  # fmt: skip
        self.store.write_bytes(f"datasets/{digest}/data.parquet", frame_to_parquet(frame))
        self.store.write_json(f"datasets/{digest}/meta.json", record)  # written last: the commit mark
        self.r.zadd(self.index, {digest: time.time()})
        return record, True

    def save_processed(self, dataset_id: str, splits: dict[str, pd.DataFrame],
                       transform: dict[str, Any], source: str, params: dict[str, Any],
                       name: str) -> dict[str, Any]:
        """Store a processed dataset (one Parquet with a split column) and its transform."""
        frames = [f.assign(**{SPLIT_COLUMN: split}) for split, f in splits.items()]
        table = pd.concat(frames, ignore_index=True)
        payload = frame_to_parquet(table)
        record = {
            "id": dataset_id, "name": name, "kind": "processed", "format": "parquet",
            "rows": int(len(table)), "columns": data.describe_columns(table.drop(columns=[SPLIT_COLUMN])),
            "sha256": sha256_hex(payload), "size_bytes": len(payload), "created_at": now_iso(),
            "tenant": self.tenant, "source": source, "params": params,
            "splits": {k: int(len(v)) for k, v in splits.items()}, "transform": transform,
        }  # fmt: skip
        self.store.write_bytes(f"datasets/{dataset_id}/data.parquet", payload)
        self.store.write_json(f"datasets/{dataset_id}/meta.json", record)
        self.r.zadd(self.index, {dataset_id: time.time()})
        return record

    def _read(self, dataset_id: str) -> dict[str, Any] | None:
        if not is_dataset_id(dataset_id):
            return None
        try:
            return self.store.read_json(f"datasets/{dataset_id}/meta.json")  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def get(self, dataset_id: str) -> dict[str, Any]:
        """A dataset record; NotFound when this tenant has none with that id."""
        record = self._read(dataset_id)
        if record is None:
            raise NotFound(f"no dataset {dataset_id!r}")
        return record

    def frame(self, dataset_id: str, split: str | None = None) -> pd.DataFrame:
        """Load a dataset's rows (one split of a processed one, if asked)."""
        record = self.get(dataset_id)
        with self.store.open(f"datasets/{dataset_id}/data.parquet") as fh:
            frame = pd.read_parquet(fh, engine="pyarrow")
        if record["kind"] == "processed" and split is not None:
            if split not in record["splits"]:
                have = sorted(record["splits"])
                raise DataError(f"dataset {dataset_id} has no {split!r} split (it has {have})")
            frame = frame[frame[SPLIT_COLUMN] == split].drop(columns=[SPLIT_COLUMN]).reset_index(drop=True)
        return frame

    def list(self, limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; the cursor is the score of the last item returned."""
        # After Redis lost its data, the listing comes back from the records in the store.
        ensure_index(self.r, self.index, self.store, "datasets", "meta.json",
                     lambda record: epoch_of(record.get("created_at")))
        top = f"({cursor}" if cursor else "+inf"
        page = self.r.zrevrangebyscore(self.index, top, "-inf", start=0, num=limit + 1, withscores=True)
        items = [r for r in (self._read(i.decode()) for i, _ in page[:limit]) if r is not None]
        next_cursor = repr(page[limit - 1][1]) if len(page) > limit else None
        return items, next_cursor
