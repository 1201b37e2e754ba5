"""Tests for the data layer: reading tables, fitting preprocessing and re-applying the saved transform."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from bigmodel.errors import DataError
from bigmodel.ml.data import (
    Prepared,
    decode_labels,
    describe_columns,
    encode,
    fit_preprocess,
    normalize,
    read_table,
    rows_to_frame,
    split_xy,
    transform_rows,
)


def mixed_frame(n: int = 200, seed: int = 1) -> pd.DataFrame:
    """Numeric, categorical and string-label columns with some nulls."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 80, n).round(1)
    age[rng.choice(n, 15, replace=False)] = np.nan
    color = rng.choice(["red", "green", "blue"], n).astype(object)
    color[rng.choice(n, 10, replace=False)] = None
    x = rng.normal(5, 2, n)
    y = np.where(x + rng.normal(0, 1, n) > 5, "yes", "no")
    return pd.DataFrame({"age": age, "color": color, "x": x, "y": y})


def roundtrip(transform: dict) -> dict:
    """The transform as the caller stores and loads it."""
    return json.loads(json.dumps(transform, allow_nan=False))


def assert_key_property(df: pd.DataFrame, prepared: Prepared) -> None:
    """Each split's features equal the saved transform re-applied to that split's raw rows."""
    transform = roundtrip(prepared.transform)
    for name, frame in prepared.splits.items():
        x, _ = split_xy(frame, transform)
        raw = df.iloc[prepared.source_rows[name]].reset_index(drop=True)
        np.testing.assert_allclose(transform_rows(raw, transform), x, atol=1e-5)


# ---------------------------------------------------------------- read_table


def test_read_csv_roundtrip() -> None:
    df = pd.DataFrame({"n": [1, 2, 3], "f": [0.5, None, 2.5], "s": ["a", "b", None],
                       "b": [True, False, True]})
    frame, kind = read_table(df.to_csv(index=False).encode(), filename="data.csv")
    assert kind == "csv"
    assert list(frame.columns) == ["n", "f", "s", "b"]
    assert frame["n"].tolist() == [1, 2, 3]
    assert frame["f"].isna().tolist() == [False, True, False]
    assert frame["s"].iloc[:2].tolist() == ["a", "b"] and pd.isna(frame["s"].iloc[2])
    assert frame["b"].tolist() == [True, False, True]
    assert describe_columns(frame) == [
        {"name": "n", "dtype": "int64"}, {"name": "f", "dtype": "float64"},
        {"name": "s", "dtype": "string"}, {"name": "b", "dtype": "bool"},
    ]


def test_read_parquet_roundtrip_by_name_sniff_and_fmt() -> None:
    df = pd.DataFrame({"n": [1, 2, 3], "s": ["a", "b", "c"], "t": pd.to_datetime(["2024-01-01"] * 3)},
                      index=[10, 11, 12])
    buf = io.BytesIO()
    df.to_parquet(buf)
    data = buf.getvalue()
    ways: list[dict] = [{"filename": "d.parquet"}, {"filename": "d.pq"}, {},
                        {"filename": "d.csv", "fmt": "parquet"}]
    for kwargs in ways:
        frame, kind = read_table(data, **kwargs)
        assert kind == "parquet"
        assert list(frame.columns) == ["n", "s", "t"]  # the unnamed saved index does not leak in
        assert frame["n"].tolist() == [1, 2, 3] and frame["s"].tolist() == ["a", "b", "c"]
        assert isinstance(frame.index, pd.RangeIndex)
    assert [c["dtype"] for c in describe_columns(frame)] == ["int64", "string", "datetime"]


@pytest.mark.parametrize(
    ("data", "kwargs", "needle"),
    [
        (b"", {}, "empty"),
        (b"  \n\n", {}, "empty"),
        (b"a,b,c\n", {}, "no rows"),
        (b"a,a\n1,2\n", {}, "duplicate"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", {"filename": "x.csv"}, "CSV"),
        (b"\xff\xfe\xfa\n\x01\x02\n", {}, "CSV"),
        (b"PAR1 this is not really parquet", {}, "Parquet"),
        (b"a,b\n1,2\n", {"fmt": "xlsx"}, "unknown format"),
        (b"a,b\n1,2\n3,4,5\n", {}, "CSV"),
    ],
)
def test_read_table_rejects_bad_files(data: bytes, kwargs: dict, needle: str) -> None:
    with pytest.raises(DataError) as info:
        read_table(data, **kwargs)
    message = info.value.message
    assert needle in message
    assert "\n" not in message and "Traceback" not in message and len(message) < 300


# ---------------------------------------------------------------- nulls


def test_dropna_true_drops_rows_with_nulls() -> None:
    df = mixed_frame()
    prepared = fit_preprocess(df, {"label": "y"})
    used = np.concatenate(list(prepared.source_rows.values()))
    complete = np.flatnonzero(df[["age", "color", "x", "y"]].notna().all(axis=1).to_numpy())
    assert sorted(used.tolist()) == complete.tolist()
    assert prepared.transform["impute"] == {}
    assert "color=__missing__" not in prepared.transform["features"]
    assert_key_property(df, prepared)
    # A model trained with dropna=true refuses a missing number at apply time.
    with pytest.raises(DataError, match=r"'age' has missing values \(row 1\).*dropna=true"):
        encode(pd.DataFrame({"age": [30.0, None], "color": ["red", "red"], "x": [1.0, 2.0]}),
               prepared.transform)


def test_dropna_false_imputes_train_median() -> None:
    df = mixed_frame(n=300)
    prepared = fit_preprocess(df, {"label": "y", "dropna": False, "normalize": "none"})
    t = prepared.transform
    assert sum(len(r) for r in prepared.source_rows.values()) == len(df)  # no label nulls, nothing dropped
    train_rows = prepared.source_rows["train"]
    train_median = float(np.nanmedian(df["age"].to_numpy()[train_rows]))
    assert t["impute"]["age"] == pytest.approx(train_median)
    assert t["impute"]["age"] != pytest.approx(float(np.nanmedian(df["age"])))  # not the all-rows median
    assert t["impute"]["x"] == pytest.approx(float(np.median(df["x"].to_numpy()[train_rows])))
    assert "color=__missing__" in t["features"]
    # Every null age, in any split, became the train median.
    age_col = t["features"].index("age")
    for name, rows in prepared.source_rows.items():
        null = df["age"].isna().to_numpy()[rows]
        assert null.any()
        np.testing.assert_allclose(prepared.splits[name].to_numpy()[null, age_col], train_median)
    # And at apply time.
    x = encode(pd.DataFrame({"age": [None], "color": [None], "x": [1.0]}), roundtrip(t))
    assert x[0, age_col] == pytest.approx(train_median)
    assert x[0, t["features"].index("color=__missing__")] == 1.0
    assert_key_property(df, prepared)


def test_null_labels_are_dropped_even_without_dropna() -> None:
    df = mixed_frame(n=100)
    df.loc[[3, 7], "y"] = None
    prepared = fit_preprocess(df, {"label": "y", "dropna": False})
    used = set(np.concatenate(list(prepared.source_rows.values())).tolist())
    assert len(used) == 98 and 3 not in used and 7 not in used


# ---------------------------------------------------------------- labels and task


def test_string_binary_label_kept_and_decoded() -> None:
    df = mixed_frame()
    prepared = fit_preprocess(df, {"label": "y", "dropna": False})
    t = prepared.transform
    assert t["task"] == "binary" and t["label_classes"] == ["no", "yes"]
    for name, frame in prepared.splits.items():
        assert frame["y"].dtype == np.int64
        _, y = split_xy(frame, t)
        assert decode_labels(y, t) == df["y"].to_numpy()[prepared.source_rows[name]].tolist()


def test_string_multiclass_label() -> None:
    labels = np.array(["cat", "dog", "bird"] * 30)
    df = pd.DataFrame({"v": np.arange(90.0), "animal": labels})
    prepared = fit_preprocess(df, {"label": "animal"})
    t = roundtrip(prepared.transform)
    assert t["task"] == "multiclass" and t["label_classes"] == ["bird", "cat", "dog"]
    _, y = split_xy(prepared.splits["train"], t)
    assert set(y.tolist()) == {0, 1, 2}
    assert decode_labels(y, t) == labels[prepared.source_rows["train"]].tolist()
    with pytest.raises(DataError):
        decode_labels(np.array([3]), t)


def test_task_inference_for_numeric_and_bool_labels() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=120)
    ints = fit_preprocess(pd.DataFrame({"x": x, "y": np.tile([3, 1, 2], 40)}), {"label": "y"})
    assert ints.transform["task"] == "multiclass" and ints.transform["label_classes"] == [1, 2, 3]
    bools = fit_preprocess(pd.DataFrame({"x": x, "y": x > 0}), {"label": "y"})
    assert bools.transform["task"] == "binary" and bools.transform["label_classes"] == [False, True]
    reg = fit_preprocess(pd.DataFrame({"x": x, "y": x * 2 + 0.5}), {"label": "y"})
    assert reg.transform["task"] == "regression" and reg.transform["label_classes"] is None
    assert reg.splits["train"]["y"].dtype == np.float64
    xs, ys = split_xy(reg.splits["test"], reg.transform)
    assert ys.dtype == np.float32 and xs.dtype == np.float32
    np.testing.assert_allclose(ys, (x * 2 + 0.5)[reg.source_rows["test"]], rtol=1e-6)
    many = fit_preprocess(pd.DataFrame({"x": x, "y": np.arange(120) % 30}), {"label": "y"})
    assert many.transform["task"] == "regression"  # 30 distinct integers is more than 20
    forced = fit_preprocess(pd.DataFrame({"x": x, "y": np.tile([0, 1], 60)}),
                            {"label": "y", "task": "regression"})
    assert forced.transform["task"] == "regression"


def test_single_class_label_is_rejected() -> None:
    df = pd.DataFrame({"x": np.arange(20.0), "target": ["a"] * 20})
    with pytest.raises(DataError, match=r"label 'target' has only one class: 'a'"):
        fit_preprocess(df, {"label": "target"})
    # A constant label is fine when the task is regression.
    prepared = fit_preprocess(df.assign(target=1.5), {"label": "target", "task": "regression"})
    assert prepared.transform["task"] == "regression"


def test_wrong_label_and_feature_names() -> None:
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]})
    with pytest.raises(DataError, match=r"'nope'.*available columns: 'a', 'b'"):
        fit_preprocess(df, {"label": "nope"})
    with pytest.raises(DataError, match="'zzz'"):
        fit_preprocess(df, {"label": "b", "features": ["a", "zzz"]})
    with pytest.raises(DataError, match="label"):
        fit_preprocess(df, {})


# ---------------------------------------------------------------- feature columns


def test_categorical_one_hot_and_unseen_category() -> None:
    df = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0] * 10, "color": ["red", "blue", "red", "green"] * 10,
                       "flag": [True, False] * 20, "y": [0, 1] * 20})
    prepared = fit_preprocess(df, {"label": "y", "normalize": "none"})
    t = roundtrip(prepared.transform)
    assert t["columns"] == ["size", "color", "flag"] and t["numeric"] == ["size"]
    assert t["categorical"] == {"color": ["blue", "green", "red"], "flag": ["false", "true"]}
    assert t["features"] == ["size", "color=blue", "color=green", "color=red", "flag=false", "flag=true"]
    train = prepared.splits["train"]
    raw = df.iloc[prepared.source_rows["train"]]
    np.testing.assert_array_equal(train["color=red"].to_numpy(), (raw["color"] == "red").to_numpy())
    np.testing.assert_array_equal(train["flag=true"].to_numpy(), raw["flag"].to_numpy())
    assert (train[["color=blue", "color=green", "color=red"]].sum(axis=1) == 1).all()
    new = pd.DataFrame({"size": [2.0], "color": ["purple"], "flag": [True]})
    np.testing.assert_array_equal(transform_rows(new, t), [[2.0, 0, 0, 0, 0, 1]])


def test_constant_column_is_kept_without_nan_or_inf() -> None:
    df = pd.DataFrame({"c": [7.0] * 50, "v": np.arange(50.0), "y": [0, 1] * 25})
    prepared = fit_preprocess(df, {"label": "y"})
    t = prepared.transform
    assert t["scale"][t["features"].index("c")] == 1.0
    for frame in prepared.splits.values():
        x, _ = split_xy(frame, t)
        assert np.isfinite(x).all()
        np.testing.assert_allclose(x[:, 0], 0.0, atol=1e-6)
    minmax = fit_preprocess(df, {"label": "y", "normalize": "minmax"})
    assert np.isfinite(split_xy(minmax.splits["train"], minmax.transform)[0]).all()


def test_all_null_feature_is_rejected() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "empty": [None] * 4, "y": [0, 1, 0, 1]})
    with pytest.raises(DataError, match="'empty'"):
        fit_preprocess(df, {"label": "y"})


def test_unparsable_numeric_strings_are_rejected() -> None:
    values = [str(float(i)) for i in range(19)] + ["abc"]
    df = pd.DataFrame({"amount": values, "y": [0, 1] * 10})
    with pytest.raises(DataError, match=r"column 'amount': 1 values do not parse.*'abc'"):
        fit_preprocess(df, {"label": "y"})
    # Exactly 90% numeric still counts as a numeric column with typos.
    typos = [str(i) for i in range(63)] + ["n/a?"] * 7
    with pytest.raises(DataError, match=r"column 'amount': 7 values .*'n/a\?'"):
        fit_preprocess(pd.DataFrame({"amount": typos, "y": [0, 1] * 35}), {"label": "y"})
    # All parseable numeric strings are numbers, not categories.
    prepared = fit_preprocess(df.assign(amount=[f" {i} " for i in range(20)]),
                              {"label": "y", "normalize": "none"})
    assert prepared.transform["numeric"] == ["amount"]
    # Mostly words: a categorical column, not an error.
    words = fit_preprocess(df.assign(amount=["a", "b", "1"] * 6 + ["a", "b"]), {"label": "y"})
    assert words.transform["categorical"]["amount"] == ["1", "a", "b"]


def test_too_many_categories() -> None:
    df = pd.DataFrame({"id": [f"u{i}" for i in range(60)], "x": np.arange(60.0), "y": [0, 1] * 30})
    with pytest.raises(DataError, match=r"column 'id' has 60 distinct values; more than 50"):
        fit_preprocess(df, {"label": "y"})
    prepared = fit_preprocess(df, {"label": "y", "max_categories": 100})
    assert "id" in prepared.transform["categorical"]
    assert fit_preprocess(df, {"label": "y", "features": ["x"]}).transform["columns"] == ["x"]


# ---------------------------------------------------------------- splits


def test_stratified_split_proportions() -> None:
    rng = np.random.default_rng(3)
    labels = np.array([1] * 700 + [0] * 300)
    rng.shuffle(labels)
    df = pd.DataFrame({"x": rng.normal(size=1000), "y": labels})
    prepared = fit_preprocess(df, {"label": "y"})
    sizes = {name: len(frame) for name, frame in prepared.splits.items()}
    for name, expected in {"train": 800, "validation": 100, "test": 100}.items():
        assert abs(sizes[name] - expected) <= 1
    for name, frame in prepared.splits.items():
        share = (frame["y"] == prepared.transform["label_classes"].index(1)).mean()
        assert abs(share - 0.7) <= 0.02, (name, share)
        assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
        assert (frame.dtypes.drop("y") == np.float32).all()
    rows = np.concatenate(list(prepared.source_rows.values()))
    assert sorted(rows.tolist()) == list(range(1000))


def test_split_reproducible_by_seed() -> None:
    df = mixed_frame(n=150)
    a = fit_preprocess(df, {"label": "y", "seed": 5})
    b = fit_preprocess(df, {"label": "y", "seed": 5})
    c = fit_preprocess(df, {"label": "y", "seed": 6})
    for name in a.splits:
        pd.testing.assert_frame_equal(a.splits[name], b.splits[name])
        np.testing.assert_array_equal(a.source_rows[name], b.source_rows[name])
    assert not np.array_equal(np.sort(a.source_rows["test"]), np.sort(c.source_rows["test"]))
    assert a.transform == b.transform


def test_split_options_and_errors() -> None:
    df = pd.DataFrame({"x": np.arange(40.0), "y": np.arange(40.0) * 1.5})
    two = fit_preprocess(df, {"label": "y", "split": {"train": 0.75, "validation": 0, "test": 0.25}})
    assert set(two.splits) == {"train", "test"} and len(two.splits["test"]) == 10
    for bad in ({"train": 0.5, "test": 0.2}, {"train": 0, "test": 1.0}, {"train": 1.2, "test": -0.2},
                {"train": 0.8, "holdout": 0.2}):
        with pytest.raises(DataError, match="split"):
            fit_preprocess(df, {"label": "y", "split": bad})
    with pytest.raises(DataError, match="too few"):
        fit_preprocess(df.iloc[:2], {"label": "y"})
    tiny = fit_preprocess(df.iloc[:3], {"label": "y"})  # rounds so each split still gets a row
    assert [len(tiny.splits[s]) for s in ("train", "validation", "test")] == [1, 1, 1]
    with pytest.raises(DataError, match="no rows left"):
        fit_preprocess(df.assign(x=[np.nan, 1.0] * 20, y=[2.0, np.nan] * 20), {"label": "y"})


# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize("method", ["standard", "minmax", "l2", "none"])
def test_normalisation_math(method: str) -> None:
    df = mixed_frame(n=120)
    prepared = fit_preprocess(df, {"label": "y", "dropna": False, "normalize": method})
    t = prepared.transform
    encoded = encode(df.iloc[prepared.source_rows["train"]], t).astype(np.float64)
    if method == "standard":
        std = encoded.std(axis=0)
        expected = (encoded - encoded.mean(axis=0)) / np.where(std == 0, 1, std)
    elif method == "minmax":
        span = encoded.max(axis=0) - encoded.min(axis=0)
        expected = (encoded - encoded.min(axis=0)) / np.where(span == 0, 1, span)
    elif method == "l2":
        assert t["offset"] is None and t["scale"] is None
        expected = encoded / np.linalg.norm(encoded, axis=1, keepdims=True)
    else:
        expected = encoded
    got, _ = split_xy(prepared.splits["train"], t)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    if method == "minmax":
        assert got.min() >= -1e-6 and got.max() <= 1 + 1e-6
    assert_key_property(df, prepared)


def test_l2_leaves_zero_rows_as_zeros() -> None:
    t = {"features": ["a", "b"], "normalize": "l2", "offset": None, "scale": None}
    np.testing.assert_allclose(normalize(np.array([[3.0, 4.0], [0.0, 0.0]]), t), [[0.6, 0.8], [0, 0]])


def test_transform_json_roundtrip_reapplies_identically() -> None:
    df = mixed_frame(n=250, seed=9)
    df["age"] = df["age"].map(lambda v: None if pd.isna(v) else f"{v:g}").astype(object)  # numbers as text
    prepared = fit_preprocess(df, {"label": "y", "dropna": False, "seed": 4})
    text = json.dumps(prepared.transform, allow_nan=False)
    assert json.loads(text) == prepared.transform
    assert set(prepared.transform) == {"version", "label", "task", "label_classes", "columns", "numeric",
                                       "categorical", "features", "impute", "fill", "normalize", "offset",
                                       "scale"}
    assert_key_property(df, prepared)


# ---------------------------------------------------------------- API rows


def test_rows_to_frame_lists_and_dicts() -> None:
    df = mixed_frame(n=100)
    t = roundtrip(fit_preprocess(df, {"label": "y", "dropna": False}).transform)
    as_lists = rows_to_frame([[30, "red", 4.5], [None, "blue", "6"]], t)
    as_dicts = rows_to_frame([{"x": 4.5, "color": "red", "age": 30, "y": "yes"},
                              {"age": None, "color": "blue", "x": "6"}], t)
    assert list(as_lists.columns) == ["age", "color", "x"]
    plain = pd.DataFrame({"age": [30.0, np.nan], "color": ["red", "blue"], "x": [4.5, 6.0]})
    expected = transform_rows(plain, t)
    np.testing.assert_allclose(transform_rows(as_lists, t), expected, atol=1e-6)
    np.testing.assert_allclose(transform_rows(as_dicts, t), expected, atol=1e-6)
    with pytest.raises(DataError, match="instance 1 has 2 values; expected 3"):
        rows_to_frame([[30, "red", 4.5], [30, "red"]], t)
    with pytest.raises(DataError, match="'x'"):
        rows_to_frame([{"age": 1, "color": "red"}], t)
    with pytest.raises(DataError):
        rows_to_frame([[30, "red", 4.5], {"age": 1, "color": "red", "x": 1}], t)
    with pytest.raises(DataError):
        rows_to_frame([], t)
    with pytest.raises(DataError, match=r"column 'x': value 'lots'"):
        transform_rows(rows_to_frame([[30, "red", "lots"]], t), t)
    with pytest.raises(DataError, match="'color'"):
        encode(pd.DataFrame({"age": [1.0], "x": [2.0]}), t)


def test_split_xy_without_label() -> None:
    df = mixed_frame(n=60)
    prepared = fit_preprocess(df, {"label": "y"})
    x, y = split_xy(prepared.splits["test"].drop(columns=["y"]), prepared.transform)
    assert y is None and x.dtype == np.float32 and x.shape[1] == len(prepared.transform["features"])
