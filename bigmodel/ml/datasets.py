"""Datasets: validated uploads stored content-addressed as Parquet, plus processed datasets.

A processed dataset is one Parquet file: the float32 features, the label and a `__split__` column,
its rows grouped by split (train, validation, test) with no row group spanning two splits, and the
row groups of each split named in the file's metadata. Reading one split reads only its row groups;
reading several reads each byte once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pa_compute
import pyarrow.parquet as pa_parquet
import redis

from bigmodel.cache import Cache
from bigmodel.clock import now_iso
from bigmodel.connections import text
from bigmodel.errors import DataError, NotFound
from bigmodel.ml.columns import ParquetColumns
from bigmodel.ml.data import Prepared
from bigmodel.ml.tables import ROW_GROUP_ROWS, describe_schema
from bigmodel.ml.upload import Upload
from bigmodel.names import is_dataset_id, safe_name
from bigmodel.rebuild import ensure_index, epoch_of
from bigmodel.store import Store

SPLIT_COLUMN = "__split__"
SPLITS_KEY = b"bigmodel.splits"  # Parquet metadata: split -> its row group indices
UPLOAD_CHUNK = 1 << 20

Arrays = tuple[np.ndarray, np.ndarray]  # features, labels


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


class _Hashing(io.RawIOBase):
    """A file being written that hashes what passes through it."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 - closed with this object
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        self.size += self.file.write(data)
        return len(memoryview(data))

    def close(self) -> None:
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        super().close()


def _write_processed(sink: IO[bytes] | io.RawIOBase, prepared: Prepared) -> dict[str, list[int]]:
    """Write a processed dataset, each split in its own row groups; returns split -> row group indices."""
    transform = prepared.transform
    features, label = transform["features"], transform["label"]
    label_type = pa.from_numpy_dtype(prepared.y.dtype)
    groups: dict[str, list[int]] = {}
    next_group = 0
    for name, (start, stop) in prepared.bounds.items():
        count = -(-(stop - start) // ROW_GROUP_ROWS)
        groups[name] = list(range(next_group, next_group + count))
        next_group += count
    schema = pa.schema([pa.field(f, pa.float32()) for f in features]
                       + [pa.field(label, label_type), pa.field(SPLIT_COLUMN, pa.string())],
                       metadata={SPLITS_KEY: json.dumps(groups).encode()})
    # Floats rarely repeat: dictionary pages would be built and thrown away for every one of them.
    options = {"use_dictionary": [SPLIT_COLUMN], "compression": "snappy"}
    with pa_parquet.ParquetWriter(sink, schema, **options) as writer:
        for name, (start, stop) in prepared.bounds.items():
            for low in range(start, stop, ROW_GROUP_ROWS):
                high = min(stop, low + ROW_GROUP_ROWS)
                # Column-major x: each feature column is contiguous, so Arrow wraps it without a copy.
                arrays = [pa.array(prepared.x[low:high, j]) for j in range(len(features))]
                arrays += [pa.array(prepared.y[low:high]), pa.repeat(pa.scalar(name), high - low)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=high - low)
    return groups


def _matrix(table: pa.Table, width: int) -> np.ndarray:
    """The first `width` columns of a table as one row-major float32 matrix (one copy, column by column)."""
    x = np.empty((table.num_rows, width), dtype=np.float32)
    for j in range(width):
        x[:, j] = table.column(j).to_numpy()
    return x


class Datasets:
    """A tenant's datasets: records in the store, an index in Redis for listing newest first."""

    def __init__(self, client: redis.Redis, store: Store, tenant: str, prefix: str = "bm",
                 cache: Cache | None = None) -> None:
        self.r = client
        self.cache = cache  # this machine's cache (workers); None reads the store directly
        self.tenant = tenant
        self.store = store.tenant(tenant)
        self.index = f"{prefix}:t:{tenant}:datasets"

    # ---------------------------------------------------------------- writing

    def work_dir(self) -> Path:
        """Where uploads and results are written before they are published: beside them in a local store
        (so publishing is a rename), else a temporary folder."""
        local = self.store.local_path("datasets")
        folder = local if local is not None else Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def new_upload(self, max_bytes: int, filename: str | None) -> Upload:
        """A new upload to stream a file into (then hand to ingest)."""
        return Upload(max_bytes, self.work_dir(), filename)

    def ingest(self, upload: Upload, name: str | None) -> tuple[dict[str, Any], bool]:
        """Store a fully received upload; returns (record, created). Nothing is written unless it is valid."""
        digest = upload.finish()
        existing = self._read(digest)
        if existing is not None:
            return existing, False
        info = upload.result()
        filename = upload.filename or ""
        record = {
            "id": digest, "name": name or safe_name(filename.rsplit(".", 1)[0], digest[:12]),
            "kind": "raw", "format": info.format, "rows": info.rows, "columns": describe_schema(info.schema),
            "sha256": digest, "size_bytes": upload.size, "created_at": now_iso(), "tenant": self.tenant,
        }  # fmt: skip
        self._publish(f"datasets/{digest}/data.parquet", upload.parquet)
        self.store.write_json(f"datasets/{digest}/meta.json", record)  # written last: the commit mark
        self.r.zadd(self.index, {digest: time.time()})
        return record, True

    def ingest_bytes(self, payload: bytes, filename: str | None, name: str | None,
                     max_bytes: int) -> tuple[dict[str, Any], bool]:
        """ingest for a file already in memory."""
        with self.new_upload(max_bytes, filename) as up:
            for start in range(0, len(payload), UPLOAD_CHUNK):
                up.write(payload[start:start + UPLOAD_CHUNK])
            return self.ingest(up, name)

    def save_processed(self, dataset_id: str, prepared: Prepared, source: str, params: dict[str, Any],
                       name: str) -> dict[str, Any]:
        """Store a processed dataset (one Parquet, split by row groups) and its transform."""
        tmp = self.work_dir() / f".tmp-{os.urandom(16).hex()}.parquet"
        try:
            sink = _Hashing(tmp)
            with sink:
                _write_processed(sink, prepared)
            columns = describe_schema(pa_parquet.read_schema(tmp))[:-1]  # all but the split column
            record = {
                "id": dataset_id, "name": name, "kind": "processed", "format": "parquet",
                "rows": len(prepared.y), "columns": columns, "sha256": sink.digest.hexdigest(),
                "size_bytes": sink.size, "created_at": now_iso(), "tenant": self.tenant, "source": source,
                "params": params, "splits": {k: hi - lo for k, (lo, hi) in prepared.bounds.items()},
                "transform": prepared.transform,
            }  # fmt: skip
            self._publish(f"datasets/{dataset_id}/data.parquet", tmp)
        finally:
            tmp.unlink(missing_ok=True)
        self.store.write_json(f"datasets/{dataset_id}/meta.json", record)
        self.r.zadd(self.index, {dataset_id: time.time()})
        return record

    def _publish(self, rel: str, local: Path) -> None:
        """Move a finished local file into the store (a rename when the store is this folder)."""
        target = self.store.local_path(rel)
        if target is not None and target.parent.parent == local.parent:
            with open(local, "rb") as fh:
                os.fsync(fh.fileno())  # on disk before the name makes it visible
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, target)
        else:
            self.store.put_file(rel, local)
            local.unlink(missing_ok=True)

    # ---------------------------------------------------------------- reading

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

    @contextlib.contextmanager
    def _parquet(self, dataset_id: str) -> Iterator[str | IO[bytes]]:
        """The dataset's Parquet: a local path (a local store, or the machine cache) pyarrow reads natively,
        else a stream."""
        rel = f"datasets/{dataset_id}/data.parquet"
        local = self.store.local_path(rel)
        if local is not None:
            yield str(local)
        elif self.cache is not None:
            record = self.get(dataset_id)
            # A processed record's sha256 is its Parquet's; a raw one's is the upload's, fixed for life.
            with self.cache.hold(self.store, rel, record["sha256"],
                                 verify=record["kind"] == "processed") as path:
                yield str(path)
        else:
            with self.store.open(rel) as fh:
                yield fh

    @contextlib.contextmanager
    def parquet_file(self, dataset_id: str) -> Iterator[pa_parquet.ParquetFile]:
        """A stored dataset's Parquet, open to read row group by row group (what a batch predict reads)."""
        with self._parquet(dataset_id) as source:
            yield pa_parquet.ParquetFile(source)

    @contextlib.contextmanager
    def columns(self, dataset_id: str) -> Iterator[ParquetColumns]:
        """A stored dataset's columns, each read from the file when asked for (what preprocess reads)."""
        with self._parquet(dataset_id) as source:
            yield ParquetColumns(source)

    def _check_splits(self, record: dict[str, Any], splits: tuple[str, ...]) -> None:
        if record["kind"] != "processed":
            raise DataError(f"dataset {record['id']} is raw: run a preprocess job on it first")
        for split in splits:
            if split not in record["splits"]:
                have = sorted(record["splits"])
                raise DataError(f"dataset {record['id']} has no {split!r} split (it has {have})")

    @staticmethod
    def _split_tables(pf: pa_parquet.ParquetFile, columns: list[str],
                      splits: tuple[str, ...]) -> Iterator[tuple[str, pa.Table]]:
        """Each asked split's rows: its own row groups, or (files from before row-group splits) a filter."""
        metadata = pf.schema_arrow.metadata or {}
        if SPLITS_KEY in metadata:
            groups = json.loads(metadata[SPLITS_KEY])
            for split in splits:
                yield split, pf.read_row_groups(groups[split], columns=columns, use_pandas_metadata=False)
            return
        table = pf.read(columns=[*columns, SPLIT_COLUMN], use_pandas_metadata=False)
        for split in splits:
            mask = pa_compute.equal(table.column(SPLIT_COLUMN), split)
            yield split, table.filter(mask).drop_columns([SPLIT_COLUMN])

    def arrays(self, dataset_id: str, splits: tuple[str, ...]) -> dict[str, Arrays]:
        """(features float32 row-major, labels) of several splits of a processed dataset, in one read."""
        record = self.get(dataset_id)
        self._check_splits(record, splits)
        transform = record["transform"]
        features, label = transform["features"], transform["label"]
        y_type = np.float32 if transform["task"] == "regression" else np.int64
        out: dict[str, Arrays] = {}
        with self._parquet(dataset_id) as source:
            pf = pa_parquet.ParquetFile(source)
            for split, table in self._split_tables(pf, [*features, label], splits):
                y = table.column(len(features)).to_numpy().astype(y_type, copy=False)
                out[split] = (_matrix(table, len(features)), y)
        return out

    def frame(self, dataset_id: str, split: str | None = None) -> pd.DataFrame:
        """Load a dataset's rows (only the asked split's, of a processed one)."""
        record = self.get(dataset_id)
        with self._parquet(dataset_id) as source:
            pf = pa_parquet.ParquetFile(source)
            if record["kind"] == "processed" and split is not None:
                self._check_splits(record, (split,))
                names = [n for n in pf.schema_arrow.names if n != SPLIT_COLUMN]
                table = next(self._split_tables(pf, names, (split,)))[1]
            else:
                table = pf.read(use_pandas_metadata=False)
        return table.to_pandas(ignore_metadata=True)

    def list(self, limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; the cursor is the score of the last item returned."""
        # After Redis lost its data, the listing comes back from the records in the store.
        ensure_index(self.r, self.index, self.store, "datasets", "meta.json",
                     lambda record: epoch_of(record.get("created_at")))
        top = f"({cursor}" if cursor else "+inf"
        page: Any = self.r.zrevrangebyscore(self.index, top, "-inf", start=0, num=limit + 1, withscores=True)
        items = [r for r in (self._read(text(i)) for i, _ in page[:limit]) if r is not None]
        next_cursor = repr(page[limit - 1][1]) if len(page) > limit else None
        return items, next_cursor
