"""Uploaded tables: sniff the format, convert CSV or Parquet to our Parquet in one streaming pass.

A CSV is parsed block by block (pyarrow's streaming reader) and written as Parquet row groups, so
memory holds a few blocks, never the file. pyarrow infers column types from the first block; when a
later block holds a value the inferred type cannot (an int column with "1.5" on row 900,000), the
column is widened one step (null -> int64 -> float64 -> string) and the file parsed again, so a type
change costs time, never a wrong value.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeAlias

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from bigmodel.errors import DataError

FORMATS = ("csv", "parquet")
CSV_BLOCK_BYTES = 2 << 20  # a parse block; types are inferred from the first one
ROW_GROUP_ROWS = 1 << 17  # rows per Parquet row group we write
SNIFF_BYTES = 8192  # what the format sniff and the binary check look at
HEAD_BYTES = 1 << 16  # a file this short with only whitespace is empty
_LABELS = {"csv": "CSV", "parquet": "Parquet"}
_KIND_NAMES = {"i": "int", "u": "uint", "f": "float"}
_INDEX_COLUMN = re.compile(r"^__index_level_\d+__$")
_TYPE_CHANGE = re.compile(r"^In CSV column #(\d+): CSV conversion error to (\w+)")


Source: TypeAlias = IO[bytes] | io.RawIOBase  # what a table is read from (or a pyarrow file)


@dataclass(frozen=True)
class TableInfo:
    """What a conversion found: the format read, the rows and the schema written."""

    format: str
    rows: int
    schema: pa.Schema


def short_error(exc: BaseException) -> str:
    """The first line of an exception message, trimmed: pyarrow appends source locations below it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def pick_format(head: bytes, filename: str | None, fmt: str | None = None) -> str:
    """fmt if given, else the filename's extension, else a sniff of the Parquet magic bytes."""
    if fmt is not None:
        kind = str(fmt).strip().lower()
        if kind not in FORMATS:
            raise DataError(f"unknown format {fmt!r}; expected 'csv' or 'parquet'")
        return kind
    name = (filename or "").lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return "parquet" if head[:4] == b"PAR1" else "csv"


def check_head(head: bytes, size: int, kind: str) -> None:
    """Refuse an empty file, and a 'CSV' that is binary, from its first HEAD_BYTES bytes."""
    if size == 0 or (size <= len(head) and not head.strip()):
        raise DataError("the file is empty")
    if kind == "csv" and b"\x00" in head[:SNIFF_BYTES]:
        raise DataError("could not read the file as CSV: it looks binary (CSV must be UTF-8 text)")


def _check_names(names: list[str]) -> list[str]:
    """The column names to keep, refusing none and duplicates; pandas' unnamed index columns are dropped."""
    if not names:
        raise DataError("the file has no columns")
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise DataError(f"the file has duplicate column names: {', '.join(map(repr, duplicates))}")
    return [n for n in names if not _INDEX_COLUMN.match(n)]


def _wider(current: pa.DataType) -> pa.DataType | None:
    """The next type up for a CSV column whose later values do not fit; None when nothing is wider."""
    if pa.types.is_null(current):
        return pa.int64()
    if pa.types.is_integer(current):
        return pa.float64()
    if pa.types.is_string(current) or pa.types.is_large_string(current):
        return None  # a string column fails only on bytes that are not UTF-8
    return pa.string()


class _Widen(Exception):
    """A later CSV block holds a value that the column's inferred type cannot: parse again, wider."""

    def __init__(self, column: str, wider: pa.DataType) -> None:
        super().__init__(column)
        self.column = column
        self.wider = wider


def write_options(schema: pa.Schema) -> dict[str, Any]:
    """ParquetWriter options: dictionary pages only where they pay (not for floats, which rarely repeat)."""
    return {"use_dictionary": [f.name for f in schema if not pa.types.is_floating(f.type)],
            "compression": "snappy"}


class _RowGroups:
    """Collects record batches and writes them to a Parquet file as row groups of ROW_GROUP_ROWS rows."""

    def __init__(self, sink: str, schema: pa.Schema, keep: list[str]) -> None:
        self.keep = keep
        self.schema = pa.schema([schema.field(n) for n in keep])
        self.writer = pa_parquet.ParquetWriter(sink, self.schema, **write_options(self.schema))
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Queue a batch; write a row group when enough rows wait."""
        if batch.schema.names != self.keep:
            batch = pa.RecordBatch.from_arrays([batch.column(n) for n in self.keep], schema=self.schema)
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        if self.pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            table = pa.Table.from_batches(self.pending, schema=self.schema)
            self.writer.write_table(table, row_group_size=self.pending_rows)
            self.rows += self.pending_rows
            self.pending, self.pending_rows = [], 0

    def close(self) -> int:
        """Write what waits and finish the file; returns the rows written."""
        try:
            self._flush()
        finally:
            self.writer.close()
        return self.rows

    def abandon(self) -> None:
        """Close the file as it is (the caller throws it away)."""
        self.pending = []
        with contextlib.suppress(Exception):
            self.writer.close()


def _csv_pass(source: Source, sink: str, column_types: dict[str, pa.DataType]) -> TableInfo:
    """One streaming parse of a CSV into Parquet, with the column types found so far forced."""
    reader = pa_csv.open_csv(
        source,
        read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        convert_options=pa_csv.ConvertOptions(strings_can_be_null=True, column_types=column_types),
    )
    try:
        names = list(reader.schema.names)
    except UnicodeDecodeError as exc:
        raise DataError("could not read the file as CSV: column names are not valid UTF-8") from exc
    out = _RowGroups(sink, reader.schema, _check_names(names))
    try:
        for batch in reader:
            out.add(batch)
    except BaseException as exc:
        out.abandon()
        match = _TYPE_CHANGE.match(str(exc)) if isinstance(exc, pa.ArrowInvalid) else None
        if match is not None and int(match.group(1)) < len(names):
            field = reader.schema.field(int(match.group(1)))
            wider = _wider(field.type)
            if wider is not None:
                raise _Widen(field.name, wider) from exc
        raise
    return TableInfo("csv", out.close(), out.schema)


def csv_to_parquet(open_source: Callable[[], Source], sink: str) -> TableInfo:
    """Convert a CSV (opened afresh by open_source for each pass) into a Parquet file at the path sink."""
    column_types: dict[str, pa.DataType] = {}
    while True:
        source = open_source()
        try:
            info = _csv_pass(source, sink, column_types)
        except _Widen as change:
            column_types[change.column] = change.wider
            continue
        except (pa.ArrowException, UnicodeDecodeError, ValueError, OSError) as exc:
            raise DataError(f"could not read the file as CSV: {short_error(exc)}") from exc
        finally:
            source.close()
        return _has_rows(info)


def parquet_to_parquet(source: Source, sink: str) -> TableInfo:
    """Rewrite an uploaded Parquet as ours, batch by batch, with pandas' unnamed index columns dropped."""
    try:
        pf = pa_parquet.ParquetFile(source)
        out = _RowGroups(sink, pf.schema_arrow, _check_names(list(pf.schema_arrow.names)))
        try:
            for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS, columns=out.keep,
                                         use_pandas_metadata=False):
                out.add(batch)
        except BaseException:
            out.abandon()
            raise
        rows = out.close()
    except (pa.ArrowException, ValueError, OSError, TypeError) as exc:
        raise DataError(f"could not read the file as Parquet: {short_error(exc)}") from exc
    return _has_rows(TableInfo("parquet", rows, out.schema))


def _has_rows(info: TableInfo) -> TableInfo:
    if info.rows == 0:
        raise DataError("the file has no rows")
    return info


def read_table(data: bytes, filename: str | None = None, fmt: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read CSV or Parquet bytes into a DataFrame, converted as an upload is; returns (frame, format)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DataError("the file content must be bytes")
    data = bytes(data)
    kind = pick_format(data[:SNIFF_BYTES], filename, fmt)
    check_head(data[:HEAD_BYTES], len(data), kind)
    with tempfile.TemporaryDirectory() as tmp:
        sink = f"{tmp}/data.parquet"
        if kind == "csv":
            csv_to_parquet(lambda: io.BytesIO(data), sink)
        else:
            parquet_to_parquet(pa.BufferReader(data), sink)
        table = pa_parquet.read_table(sink)
    try:
        return table.to_pandas(ignore_metadata=True), kind
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise DataError(f"could not convert the {_LABELS[kind]} data: {short_error(exc)}") from exc


# ---------------------------------------------------------------- column descriptions


def describe_schema(schema: pa.Schema) -> list[dict[str, str]]:
    """[{"name", "dtype"}] for stored columns: int64, float64, bool, string, datetime, date, ..."""
    return [{"name": f.name, "dtype": _arrow_dtype(f.type)} for f in schema]


def _arrow_dtype(t: pa.DataType) -> str:
    """A short, stable dtype name for users."""
    if pa.types.is_signed_integer(t):
        return f"int{t.bit_width}"
    if pa.types.is_unsigned_integer(t):
        return f"uint{t.bit_width}"
    if pa.types.is_floating(t):
        return f"float{t.bit_width}"
    checks: list[tuple[Callable[[pa.DataType], bool], str]] = [
        (pa.types.is_boolean, "bool"), (pa.types.is_string, "string"), (pa.types.is_large_string, "string"),
        (pa.types.is_timestamp, "datetime"), (pa.types.is_date, "date"), (pa.types.is_duration, "timedelta"),
        (pa.types.is_time, "time"), (pa.types.is_null, "null"), (pa.types.is_binary, "bytes"),
        (pa.types.is_dictionary, "category"), (pa.types.is_decimal, "decimal"),
    ]
    return next((name for check, name in checks if check(t)), "object")


def _simple_dtype(series: pd.Series) -> str:
    """A short, stable dtype name for users (int64, float64, bool, string, datetime, ...)."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    kind = dtype.kind
    if kind in "iuf":
        return f"{_KIND_NAMES[kind]}{dtype.itemsize * 8}"
    if kind == "b":
        return "bool"
    if kind == "M":
        return "datetime"
    if kind == "m":
        return "timedelta"
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    return {"string": "string", "boolean": "bool", "integer": "int64", "floating": "float64",
            "mixed-integer-float": "float64", "datetime64": "datetime", "datetime": "datetime",
            "date": "date", "empty": "null", "bytes": "bytes"}.get(inferred, "object")


def describe_columns(df: pd.DataFrame) -> list[dict[str, str]]:
    """[{"name": ..., "dtype": ...}] with simple dtype names: int64, float64, bool, string, datetime, ..."""
    return [{"name": str(name), "dtype": _simple_dtype(df.iloc[:, i])} for i, name in enumerate(df.columns)]
