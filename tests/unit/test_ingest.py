"""Tests for uploads as they stream in: hashing, the size limit, conversion while receiving, type changes."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pa_parquet
import pytest

from bigmodel.errors import DataError, PayloadTooLarge
from bigmodel.ml import tables
from bigmodel.ml.upload import Upload


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small parse blocks so that "a later block" is a few kilobytes in, not megabytes.
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 1 << 14)
    monkeypatch.setattr(tables, "ROW_GROUP_ROWS", 5_000)


def stream(upload: Upload, payload: bytes, chunk: int = 4096) -> str:
    for start in range(0, len(payload), chunk):
        upload.write(payload[start:start + chunk])
    return upload.finish()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def late_type_changes(rows: int = 20_000) -> tuple[bytes, pd.DataFrame]:
    """Columns whose first blocks say int, empty and int, and whose last rows say otherwise."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"count": rng.integers(0, 1000, rows).astype(object),
                          "late": [None] * rows, "code": rng.integers(0, 50, rows).astype(object),
                          "x": rng.normal(size=rows)})
    frame.loc[rows - 3, "count"] = 2.5  # int -> float
    frame.loc[rows - 2:, "late"] = [7, 8.25]  # all empty -> int -> float
    frame.loc[rows - 1, "code"] = "n/a?"  # int -> text
    return frame.to_csv(index=False).encode(), frame


def test_csv_streams_in_and_converts_while_arriving(tmp_path: Path) -> None:
    payload, _ = late_type_changes()
    expected = pd.read_csv(io.BytesIO(payload.replace(b"n/a?", b"")))  # pandas' reading, bar the text
    with Upload(1 << 30, tmp_path, "data.csv") as upload:
        digest = stream(upload, payload)
        info = upload.result()
        assert digest == hashlib.sha256(payload).hexdigest() and upload.size == len(payload)
        assert info.format == "csv" and info.rows == len(expected)
        stored = pa_parquet.read_table(upload.parquet).to_pandas()
        assert pa_parquet.ParquetFile(upload.parquet).metadata.num_row_groups == 4  # 5,000-row groups
    assert leftovers(tmp_path) == []  # never published: closing removed it
    # Each late change widened its column instead of failing or corrupting a value.
    assert [c["dtype"] for c in tables.describe_schema(info.schema)] == ["float64", "float64", "string",
                                                                          "float64"]
    np.testing.assert_array_equal(stored["count"].to_numpy(), expected["count"].to_numpy())
    np.testing.assert_array_equal(stored["late"].to_numpy(), expected["late"].to_numpy())
    assert stored["code"].iloc[-1] == "n/a?" and stored["code"].iloc[:-1].tolist() == [
        str(int(v)) for v in expected["code"].iloc[:-1]]
    np.testing.assert_array_equal(stored["x"].to_numpy(), expected["x"].to_numpy())


def test_conversion_follows_the_upload_before_it_ends(tmp_path: Path) -> None:
    payload, _ = late_type_changes(40_000)
    half = len(payload) // 2
    with Upload(1 << 30, tmp_path, "data.csv") as upload:
        upload.write(payload[:half])
        # The converter has read what arrived and waits for more: the Parquet file already exists.
        deadline = threading.Event()
        for _ in range(200):
            if upload.parquet.exists() and upload.parquet.stat().st_size > 0:
                break
            deadline.wait(0.05)
        assert upload.parquet.exists()
        stream(upload, payload[half:])
        assert upload.result().rows == 40_000


def test_over_the_limit_stops_and_leaves_nothing(tmp_path: Path) -> None:
    payload, _ = late_type_changes()
    with Upload(len(payload) - 1, tmp_path, "data.csv") as upload, pytest.raises(PayloadTooLarge) as info:
        stream(upload, payload)
    assert "limit" in info.value.message
    assert leftovers(tmp_path) == []


def test_abandoned_upload_stops_its_converter(tmp_path: Path) -> None:
    payload, _ = late_type_changes()
    upload = Upload(1 << 30, tmp_path, "data.csv")
    upload.write(payload[: len(payload) // 2])
    upload.close()  # e.g. the client went away: the converter is waiting for bytes that never come
    assert upload._thread is not None and not upload._thread.is_alive()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("payload", "filename", "needle"),
    [
        (b"", "e.csv", "empty"),
        (b"a,b\n1,2\n" + b"3,4\n" * 20_000 + b"5,6,7\n", "bad.csv", "Expected 2 columns"),
        (b"\x00\x01binary" * 10_000, "x.csv", "looks binary"),
        (b"PAR1" + b"\x00" * 100, None, "Parquet"),
        (b"a,b,c\n", "h.csv", "no rows"),
    ],
)
def test_bad_files_fail_after_the_body_and_leave_nothing(tmp_path: Path, payload: bytes,
                                                        filename: str | None, needle: str) -> None:
    with Upload(1 << 30, tmp_path, filename) as upload:
        stream(upload, payload)  # the body is taken whole: the error comes with the answer
        with pytest.raises(DataError) as info:
            upload.result()
    assert needle in info.value.message
    assert leftovers(tmp_path) == []


def test_parquet_upload_drops_the_saved_index(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": np.arange(30_000), "b": ["x", "y", "z"] * 10_000}, index=np.arange(30_000) + 5)
    buf = io.BytesIO()
    frame.to_parquet(buf)
    with Upload(1 << 30, tmp_path, "f.parquet") as upload:
        stream(upload, buf.getvalue(), chunk=1 << 16)
        info = upload.result()
        stored = pa_parquet.read_table(upload.parquet).to_pandas()
    assert info.format == "parquet" and info.rows == 30_000
    assert list(stored.columns) == ["a", "b"] and stored["a"].tolist() == list(range(30_000))
