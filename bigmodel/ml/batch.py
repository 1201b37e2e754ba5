"""Sharded batch prediction: which rows each shard reads, reading them a row group at a time, the merge.

A shard is a [start, stop) range of the rows a predict job reads (a dataset's, or one split's of a
processed dataset). Shards are whole row groups where the groups are smaller than a shard, so that
each byte is read once; a row group larger than a shard is cut into even slices. Every reader holds
one row group at a time, and the merge copies the shards' files row group by row group.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pa_parquet

from bigmodel.errors import DataError
from bigmodel.ml.datasets import SPLITS_KEY
from bigmodel.ml.tables import write_options

Shard = tuple[int, int]  # [start, stop) rows


@dataclass(frozen=True)
class RowGroups:
    """The rows a predict job reads from a Parquet file: some of its row groups, in order."""

    indices: list[int]
    sizes: list[int]

    @property
    def rows(self) -> int:
        """How many rows they hold."""
        return sum(self.sizes)

    @classmethod
    def of(cls, pf: pa_parquet.ParquetFile, split: str | None = None) -> RowGroups:
        """Every row group of the file, or those of one split of a processed dataset."""
        meta = pf.metadata
        indices = list(range(meta.num_row_groups))
        if split is not None:
            splits = json.loads((pf.schema_arrow.metadata or {}).get(SPLITS_KEY, b"null"))
            if splits is None:
                raise DataError("this processed dataset was written before splits had their own row groups: "
                                "run its preprocess job again to predict on one split")
            if split not in splits:
                raise DataError(f"the dataset has no {split!r} split (it has {sorted(splits)})")
            indices = [int(i) for i in splits[split]]
        return cls(indices, [meta.row_group(i).num_rows for i in indices])


def plan_shards(sizes: Sequence[int], shard_rows: int) -> list[Shard]:
    """[start, stop) ranges that cover every row once, in order: whole row groups up to shard_rows rows
    a shard, and a row group larger than shard_rows cut into even slices of at most shard_rows."""
    if shard_rows < 1:
        raise ValueError("shard_rows must be at least 1")
    shards: list[Shard] = []
    start = pos = 0
    for size in sizes:
        if pos - start + size > shard_rows and pos > start:
            shards.append((start, pos))
            start = pos
        if size > shard_rows:
            pieces = -(-size // shard_rows)
            cuts = [pos + size * i // pieces for i in range(pieces + 1)]
            shards += list(zip(cuts, cuts[1:], strict=False))
            start = pos + size
        pos += size
    if pos > start:
        shards.append((start, pos))
    return shards


def check_range(rows: Sequence[int] | None, total: int) -> Shard:
    """The asked [start, stop) (all rows when None), refused when it goes past the rows there are."""
    if rows is None:
        return 0, total
    start, stop = int(rows[0]), int(rows[1])
    if stop > total:
        raise DataError(f"rows [{start}, {stop}) go past the {total} rows there are")
    return start, stop


def read_range(pf: pa_parquet.ParquetFile, groups: RowGroups, shard: Shard,
               columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
    """(first row, rows) blocks of a shard: one row group at a time, sliced where the shard cuts it."""
    start, stop = shard
    offset = 0
    for index, size in zip(groups.indices, groups.sizes, strict=True):
        low, high = max(start, offset), min(stop, offset + size)
        if low < high:
            table = pf.read_row_group(index, columns=columns, use_pandas_metadata=False)
            yield low, table.slice(low - offset, high - low)
        offset += size
        if offset >= stop:
            return


def merge(sources: Iterable[str | IO[bytes]], sink: str | IO[bytes]) -> int:
    """Copy Parquet files, in order, into one (row group by row group); returns the rows written."""
    writer: pa_parquet.ParquetWriter | None = None
    rows = 0
    try:
        for source in sources:
            pf = pa_parquet.ParquetFile(source)
            if writer is None:
                writer = pa_parquet.ParquetWriter(sink, pf.schema_arrow, **write_options(pf.schema_arrow))
            for i in range(pf.num_row_groups):
                group = pf.read_row_group(i, use_pandas_metadata=False)
                writer.write_table(group, row_group_size=max(1, group.num_rows))
                rows += group.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def shard_name(index: int, count: int, params: dict[str, Any]) -> str:
    """How a shard is named in messages: 'shard 3 of 8 (rows 100000-150000)'."""
    start, stop = params.get("rows") or (0, 0)
    return f"shard {index + 1} of {count} (rows {start}-{stop})"
