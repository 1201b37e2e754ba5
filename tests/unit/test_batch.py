"""Sharded batch prediction without services: shard planning, row-range reads, the merge, predictions tables
and what a predict job does with rows the model cannot take (missing: fail | null | impute)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pa_parquet
import pytest

from bigmodel.errors import DataError
from bigmodel.ml import predictions
from bigmodel.ml.batch import RowGroups, check_range, merge, plan_shards, read_range
from bigmodel.ml.data import fit_preprocess
from bigmodel.ml.transform import encode, encode_rows


def covers(shards: list[tuple[int, int]], total: int) -> bool:
    """The shards are contiguous, non-empty and cover [0, total) in order."""
    if not shards:
        return total == 0
    starts, stops = [a for a, _ in shards], [b for _, b in shards]
    return all(a < b for a, b in shards) and starts == [0, *stops[:-1]] and stops[-1] == total


@pytest.mark.parametrize(("sizes", "shard_rows", "expected"), [
    ([10, 10, 10, 5], 25, [(0, 20), (20, 35)]),  # whole row groups while they fit
    ([10, 10, 10], 30, [(0, 30)]),
    ([131072, 68928], 50000,
     [(0, 43690), (43690, 87381), (87381, 131072), (131072, 165536), (165536, 200000)]),
    ([5, 40, 5], 10, [(0, 5), (5, 15), (15, 25), (25, 35), (35, 45), (45, 50)]),  # a big group cut evenly
    ([], 10, []),
])
def test_plan_shards(sizes: list[int], shard_rows: int, expected: list[tuple[int, int]]) -> None:
    shards = plan_shards(sizes, shard_rows)
    assert shards == expected
    assert covers(shards, sum(sizes)) and all(b - a <= shard_rows for a, b in shards)


def test_plan_shards_property() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = [int(v) for v in rng.integers(0, 50, rng.integers(1, 12))]
        shard_rows = int(rng.integers(1, 80))
        shards = plan_shards(sizes, shard_rows)
        assert covers(shards, sum(sizes)) and all(b - a <= shard_rows for a, b in shards)


def write_groups(path: str, sizes: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame({"i": np.arange(sum(sizes)), "v": np.arange(sum(sizes)) * 0.5})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pa_parquet.ParquetWriter(path, table.schema) as writer:
        start = 0
        for size in sizes:
            writer.write_table(table.slice(start, size))
            start += size
    return frame


def test_read_range_reads_exactly_the_shard_a_group_at_a_time(tmp_path) -> None:
    path = str(tmp_path / "d.parquet")
    write_groups(path, [7, 7, 7])
    pf = pa_parquet.ParquetFile(path)
    groups = RowGroups.of(pf)
    assert groups.sizes == [7, 7, 7] and groups.rows == 21
    blocks = list(read_range(pf, groups, (5, 16), ["i"]))
    assert [first for first, _ in blocks] == [5, 7, 14]  # one block per row group touched
    assert np.concatenate([b.column("i").to_numpy() for _, b in blocks]).tolist() == list(range(5, 16))
    assert check_range(None, 21) == (0, 21)
    with pytest.raises(DataError, match="past the 21 rows"):
        check_range([10, 22], 21)


def test_merge_keeps_order_and_every_row(tmp_path) -> None:
    parts = []
    for k, sizes in enumerate([[3, 2], [4], [1, 1, 1]]):
        path = str(tmp_path / f"p{k}.parquet")
        frame = write_groups(path, sizes)
        frame["i"] += 100 * k
        pa_parquet.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=2)
        parts.append(path)
    rows = merge(parts, str(tmp_path / "all.parquet"))
    merged = pa_parquet.read_table(tmp_path / "all.parquet").column("i").to_pylist()
    assert rows == 12 and merged == [0, 1, 2, 3, 4, 100, 101, 102, 103, 200, 201, 202]


def test_prediction_table_nulls_and_fixed_schema() -> None:
    outputs = np.array([[0.9], [0.2], [0.7]])
    reasons = np.array([None, "column 'a': missing value", None], dtype=object)
    table = predictions.table("binary", ["no", "yes"], outputs, reasons)
    assert table.to_pydict() == {"probability": [0.9, None, 0.7], "label": ["yes", None, "yes"],
                                 "reason": [None, "column 'a': missing value", None]}
    every_null = predictions.table("binary", ["no", "yes"], outputs, np.full(3, "x", dtype=object))
    assert every_null.schema == table.schema  # a block of only null rows still merges with the others
    multi = predictions.table("multiclass", [1, 2, 3], np.array([[0.1, 0.7, 0.2]]))
    assert multi.column_names == ["prob_1", "prob_2", "prob_3", "label", "reason"]
    assert multi.column("label").to_pylist() == [2]


# ---------------------------------------------------------------- missing: fail | null | impute


@pytest.fixture(scope="module")
def dropna_transform() -> dict:
    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame({"a": rng.normal(10, 1, n), "color": rng.choice(["red", "red", "blue"], n)})
    frame["y"] = (frame["a"] > 10).astype(int)
    return fit_preprocess(frame, {"label": "y", "dropna": True}).transform


def bad_rows() -> pd.DataFrame:
    return pd.DataFrame({"a": [10.0, None, 11.0, "x"], "color": ["red", "blue", "purple", "blue"]})


def test_null_mode_gives_reasons_to_the_unusable_rows_only(dropna_transform: dict) -> None:
    encoded = encode_rows(bad_rows(), dropna_transform, "null")
    assert encoded.reasons.tolist() == [None, "column 'a': missing value",
                                        "column 'color': category never seen in training",
                                        "column 'a': not a finite number"]
    assert encoded.bad.tolist() == [False, True, True, True]
    assert np.isfinite(encoded.x).all()


def test_impute_mode_fills_from_the_train_statistics(dropna_transform: dict) -> None:
    t = dropna_transform
    assert t["fill"]["color"] == "red" and t["fill"]["a"] == pytest.approx(10, abs=0.3)
    encoded = encode_rows(bad_rows(), t, "impute")
    assert encoded.reasons is None
    features = t["features"]
    x = pd.DataFrame(encoded.x, columns=features)
    assert x.loc[1, "a"] == pytest.approx(t["fill"]["a"]) and x.loc[3, "a"] == pytest.approx(t["fill"]["a"])
    assert x.loc[2, "color=red"] == 1.0 and x.loc[2, "color=blue"] == 0.0


def test_fail_mode_names_the_column_and_the_first_bad_row(dropna_transform: dict) -> None:
    with pytest.raises(DataError, match=r"column 'a' has missing values \(row 1001\)"):
        encode_rows(bad_rows(), dropna_transform, "fail", first_row=1000)
    with pytest.raises(DataError, match=r"column 'color': category 'purple' \(row 2\)"):
        encode_rows(bad_rows().iloc[[0, 2]].reset_index(drop=True).assign(a=[1.0, 2.0]).iloc[[0, 1]],
                    dropna_transform, "fail", first_row=1)


def test_online_encode_is_unchanged(dropna_transform: dict) -> None:
    frame = pd.DataFrame({"a": [10.0], "color": ["purple"]})
    x = encode(frame, dropna_transform)  # an unseen category still encodes as all zeros online
    assert x[0, 1:].tolist() == [0.0, 0.0]


def test_row_groups_of_one_split_of_a_processed_dataset(tmp_path, monkeypatch) -> None:
    from bigmodel.ml import datasets

    monkeypatch.setattr(datasets, "ROW_GROUP_ROWS", 40)  # several row groups per split
    frame = pd.DataFrame({"a": np.arange(300, dtype=float), "y": np.arange(300) % 2})
    prepared = fit_preprocess(frame, {"label": "y"})
    path = str(tmp_path / "p.parquet")
    with open(path, "wb") as sink:
        datasets._write_processed(sink, prepared)
    pf = pa_parquet.ParquetFile(path)
    train = RowGroups.of(pf, "train")
    assert train.rows == prepared.bounds["train"][1] - prepared.bounds["train"][0] and len(train.sizes) > 1
    test = RowGroups.of(pf, "test")
    start, stop = prepared.bounds["test"]
    shards = plan_shards(test.sizes, 7)
    blocks = [b for s in shards for _, b in read_range(pf, test, s, ["a"])]
    got = np.concatenate([b.column("a").to_numpy() for b in blocks])
    np.testing.assert_array_equal(got, prepared.x[start:stop, 0])  # the split's rows, in order, once each
    with pytest.raises(DataError, match="no 'holdout' split"):
        RowGroups.of(pf, "holdout")


def test_shard_size_setting_and_rows_param_are_checked() -> None:
    from bigmodel.config import Settings
    from bigmodel.errors import ConfigError, ValidationFailed
    from bigmodel.jobs.jobtypes import validate_params

    assert Settings.from_env({}).predict_shard_rows == 250_000
    assert Settings.from_env({"BIGMODEL_PREDICT_SHARD_ROWS": "50000"}).predict_shard_rows == 50_000
    with pytest.raises(ConfigError, match="BIGMODEL_PREDICT_SHARD_ROWS"):
        Settings.from_env({"BIGMODEL_PREDICT_SHARD_ROWS": "0"})
    dataset = "a" * 64
    params = validate_params("predict", {"model": "m", "dataset": dataset, "rows": [0, 10]})
    assert params["rows"] == [0, 10] and params["missing"] == "null"
    for bad in ({"rows": [10, 10]}, {"rows": [-1, 5]}, {"rows": [0, 1, 2]}, {"missing": "drop"},
                {"rows": [0, 5], "dataset": None, "instances": [[1.0]]}):
        with pytest.raises(ValidationFailed):
            validate_params("predict", {"model": "m", "dataset": dataset, **bad})
