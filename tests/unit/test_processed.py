"""Processed datasets on disk: splits in their own row groups, read once; the older one-table layout too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pa_parquet
import pytest

from bigmodel.errors import DataError
from bigmodel.ml import datasets as datasets_module
from bigmodel.ml.columns import ParquetColumns
from bigmodel.ml.data import fit_preprocess
from bigmodel.ml.datasets import SPLIT_COLUMN, Datasets, _write_processed
from bigmodel.store import Store

DATASET = "ab" * 32


def raw_frame(n: int = 3_000, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.choice(["x", "y", "z"], n),
                         "y": rng.integers(0, 2, n)})


def store_processed(tmp_path: Path, frame: pd.DataFrame, old_layout: bool = False) -> tuple[Datasets, dict]:
    """A processed dataset written as the preprocess job writes it (or as it was written before)."""
    prepared = fit_preprocess(frame, {"label": "y"})
    store = Store(str(tmp_path / "store"))
    ds = Datasets(None, store, "t")  # type: ignore[arg-type]  # reading needs no Redis
    path = ds.store.local_path(f"datasets/{DATASET}/data.parquet")
    assert path is not None
    path.parent.mkdir(parents=True)
    if old_layout:  # one pandas table with a split column, row groups across splits
        frames = [f.assign(**{SPLIT_COLUMN: s}) for s, f in prepared.splits.items()]
        pd.concat(frames, ignore_index=True).to_parquet(path, index=False)
    else:
        with open(path, "wb") as fh:
            _write_processed(fh, prepared)
    bounds = prepared.bounds
    ds.store.write_json(f"datasets/{DATASET}/meta.json", {
        "id": DATASET, "kind": "processed", "transform": prepared.transform,
        "splits": {s: hi - lo for s, (lo, hi) in bounds.items()}})
    return ds, {"prepared": prepared, "path": path}


@pytest.mark.parametrize("old_layout", [False, True])
def test_arrays_of_several_splits_in_one_read(tmp_path: Path, old_layout: bool) -> None:
    ds, made = store_processed(tmp_path, raw_frame(), old_layout)
    prepared = made["prepared"]
    arrays = ds.arrays(DATASET, ("train", "validation", "test"))
    for split in ("train", "validation", "test"):
        x, y = arrays[split]
        want_x, want_y = prepared.split(split)
        assert x.dtype == np.float32 and x.flags.c_contiguous  # row-major: batches are rows
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)
        frame = ds.frame(DATASET, split)
        assert SPLIT_COLUMN not in frame.columns
        pd.testing.assert_frame_equal(frame, prepared.splits[split], check_dtype=False)


def test_each_split_has_its_own_row_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets_module, "ROW_GROUP_ROWS", 1_000)
    ds, made = store_processed(tmp_path, raw_frame(5_000))
    pf = pa_parquet.ParquetFile(made["path"])
    groups = [pf.read_row_group(i, columns=[SPLIT_COLUMN]).column(0).unique().to_pylist()
              for i in range(pf.metadata.num_row_groups)]
    assert all(len(g) == 1 for g in groups)  # no row group spans two splits
    assert [g[0] for g in groups] == ["train"] * 4 + ["validation", "test"]
    read: list[list[int]] = []
    original = pa_parquet.ParquetFile.read_row_groups

    def spy(self: pa_parquet.ParquetFile, row_groups: list[int], *args: object, **kwargs: object) -> object:
        read.append(list(row_groups))
        return original(self, row_groups, *args, **kwargs)

    monkeypatch.setattr(pa_parquet.ParquetFile, "read_row_groups", spy)
    assert len(ds.frame(DATASET, "test")) == made["prepared"].bounds["test"][1] - made["prepared"].bounds[
        "test"][0]
    assert read == [[5]]  # the test split's row group only


def test_missing_split_and_raw_dataset_are_clear_errors(tmp_path: Path) -> None:
    frame = raw_frame()
    prepared = fit_preprocess(frame, {"label": "y", "split": {"train": 0.9, "test": 0.1}})
    assert set(prepared.bounds) == {"train", "test"}
    ds, _ = store_processed(tmp_path, frame)
    ds.store.write_json(f"datasets/{DATASET}/meta.json", {
        **ds.get(DATASET), "splits": {s: hi - lo for s, (lo, hi) in prepared.bounds.items()}})
    with pytest.raises(DataError, match="no 'validation' split"):
        ds.arrays(DATASET, ("train", "validation"))
    ds.store.write_json(f"datasets/{DATASET}/meta.json", {**ds.get(DATASET), "kind": "raw"})
    with pytest.raises(DataError, match="raw"):
        ds.arrays(DATASET, ("train",))


def test_preprocess_from_a_parquet_file_equals_from_the_frame(tmp_path: Path) -> None:
    frame = raw_frame()
    frame.loc[::7, "a"] = np.nan
    frame.to_parquet(tmp_path / "raw.parquet", index=False)
    from_frame = fit_preprocess(frame, {"label": "y", "dropna": False})
    from_file = fit_preprocess(ParquetColumns(str(tmp_path / "raw.parquet")), {"label": "y", "dropna": False})
    assert from_file.transform == from_frame.transform
    np.testing.assert_array_equal(from_file.x, from_frame.x)
    assert from_file.x.flags.f_contiguous  # built column by column


@pytest.mark.parametrize("method", ["standard", "minmax", "l2"])
def test_blockwise_normalisation_is_exact_in_either_memory_order(monkeypatch: pytest.MonkeyPatch,
                                                                 method: str) -> None:
    from bigmodel.ml import transform as transform_module
    from bigmodel.ml.data import fit_scaling

    monkeypatch.setattr(transform_module, "BLOCK_VALUES", 64)  # many blocks even for a small matrix
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(300, 7)) * 1000 + 5000).astype(np.float32)
    offset, scale = fit_scaling(np.asfortranarray(x), method)
    t = {"features": list("abcdefg"), "normalize": method, "offset": offset, "scale": scale}
    exact = x.astype(np.float64)
    if method == "l2":
        want = exact / np.linalg.norm(exact, axis=1, keepdims=True)
    else:
        want = (exact - np.asarray(offset)) / np.asarray(scale)
        lo, hi = (exact.mean(0), exact.std(0)) if method == "standard" else (exact.min(0), np.ptp(exact, 0))
        np.testing.assert_allclose(offset, lo, rtol=1e-12)
        np.testing.assert_allclose(scale, hi, rtol=1e-12)
    by_rows, by_columns = np.ascontiguousarray(x), np.asfortranarray(x)
    transform_module.normalize_inplace(by_rows, t)
    transform_module.normalize_inplace(by_columns, t)
    np.testing.assert_array_equal(by_rows, by_columns)
    np.testing.assert_array_equal(by_rows, want.astype(np.float32))  # the rounding of the exact value
