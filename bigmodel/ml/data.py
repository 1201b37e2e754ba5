"""The data layer: read uploaded tables, then fit cleaning, encoding, splitting and normalisation."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from bigmodel.errors import DataError
from bigmodel.ml.splitting import SPLITS, split_rows
from bigmodel.ml.transform import (
    MISSING,
    NORMALIZATIONS,
    category_keys,
    decode_labels,
    encode,
    json_scalar,
    normalize,
    parse_numeric,
    rows_to_frame,
    split_xy,
    transform_rows,
)

__all__ = [
    "Prepared",
    "decode_labels",
    "describe_columns",
    "encode",
    "fit_preprocess",
    "normalize",
    "read_table",
    "rows_to_frame",
    "split_xy",
    "transform_rows",
]

TASKS = ("binary", "multiclass", "regression")
DEFAULT_SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}
NUMERIC_SHARE = 0.9  # an object column this numeric is numbers with typos, not categories
MAX_INFERRED_CLASSES = 20
_LABELS = {"csv": "CSV", "parquet": "Parquet"}
_KIND_NAMES = {"i": "int", "u": "uint", "f": "float"}
_INDEX_COLUMN = re.compile(r"^__index_level_\d+__$")


# ---------------------------------------------------------------- reading


def _short(exc: BaseException) -> str:
    """The first line of an exception message, trimmed: pyarrow appends source locations below it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _pick_format(data: bytes, filename: str | None, fmt: str | None) -> str:
    """fmt if given, else the filename's extension, else a sniff of the Parquet magic bytes."""
    if fmt is not None:
        kind = str(fmt).strip().lower()
        if kind not in ("csv", "parquet"):
            raise DataError(f"unknown format {fmt!r}; expected 'csv' or 'parquet'")
        return kind
    name = (filename or "").lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return "parquet" if data[:4] == b"PAR1" else "csv"


def _read_csv(data: bytes) -> pa.Table:
    """Parse CSV bytes; empty strings and NA markers become nulls in every column type."""
    if b"\x00" in data[:8192]:
        raise DataError("could not read the file as CSV: it looks binary (CSV must be UTF-8 text)")
    # One block for all but huge files, so column types are inferred from every row, not the first MiB.
    block_size = min(max(len(data) + 1, 1 << 20), 1 << 30)
    try:
        return pa_csv.read_csv(
            pa.BufferReader(data),
            read_options=pa_csv.ReadOptions(block_size=block_size),
            convert_options=pa_csv.ConvertOptions(strings_can_be_null=True),
        )
    except (pa.ArrowException, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DataError(f"could not read the file as CSV: {_short(exc)}") from exc


def _read_parquet(data: bytes) -> pa.Table:
    """Parse Parquet bytes."""
    try:
        return pa_parquet.read_table(pa.BufferReader(data))
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise DataError(f"could not read the file as Parquet: {_short(exc)}") from exc


def read_table(data: bytes, filename: str | None = None, fmt: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read CSV or Parquet bytes with pyarrow into a DataFrame; returns (frame, "csv"|"parquet")."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DataError("the file content must be bytes")
    data = bytes(data)
    if not data.strip():
        raise DataError("the file is empty")
    kind = _pick_format(data, filename, fmt)
    table = _read_parquet(data) if kind == "parquet" else _read_csv(data)
    try:
        names = table.column_names  # pyarrow decodes header names only now
    except UnicodeDecodeError as exc:
        raise DataError(f"could not read the file as {_LABELS[kind]}: "
                        "column names are not valid UTF-8") from exc
    if not names:
        raise DataError("the file has no columns")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"the file has duplicate column names: {', '.join(map(repr, duplicates))}")
    if table.num_rows == 0:
        raise DataError("the file has no rows")
    try:
        # ignore_metadata: a saved pandas index comes back as a plain column, never as the index.
        df = table.to_pandas(ignore_metadata=True)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise DataError(f"could not convert the {_LABELS[kind]} data: {_short(exc)}") from exc
    unnamed_index = [c for c in df.columns if _INDEX_COLUMN.match(str(c))]
    return df.drop(columns=unnamed_index), kind


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


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Prepared:
    """The result of fitting preprocessing: split frames plus the JSON-serialisable transform."""

    splits: dict[str, pd.DataFrame]
    transform: dict[str, Any]
    source_rows: dict[str, np.ndarray]  # positions (iloc) in the input frame of each split's rows


@dataclass(frozen=True)
class _Params:
    """fit_preprocess parameters after validation."""

    label: str
    features: list[str]
    task: str | None
    dropna: bool
    normalize: str
    split: dict[str, float]
    seed: int
    max_categories: int


def _names(names: list[Any], limit: int = 30) -> str:
    """A readable, bounded list of column names for messages."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _is_int(value: Any) -> bool:
    """True for ints but not bools (JSON true must not pass as 1)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _read_split(raw: Any) -> dict[str, float]:
    """Validate split fractions; missing names mean 0."""
    if raw is None:
        return dict(DEFAULT_SPLIT)
    if not isinstance(raw, dict):
        raise DataError("'split' must be an object with train/validation/test fractions")
    unknown = [k for k in raw if k not in SPLITS]
    if unknown:
        raise DataError(f"unknown split name(s) {_names(unknown)}; use train, validation and test")
    split: dict[str, float] = {}
    for name in SPLITS:
        value = raw.get(name, 0.0)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value) or value < 0:
            raise DataError(f"split fraction {name!r} must be a number >= 0, got {value!r}")
        split[name] = float(value)
    if abs(sum(split.values()) - 1.0) > 1e-6:
        raise DataError(f"split fractions must sum to 1, got {sum(split.values()):g}")
    if split["train"] <= 0:
        raise DataError("the train split fraction must be greater than 0")
    return split


def _read_params(df: pd.DataFrame, params: dict[str, Any]) -> _Params:
    """Check params against the frame and fill in defaults."""
    if not isinstance(params, dict):
        raise DataError("preprocessing parameters must be an object")
    available = list(df.columns)
    label = params.get("label")
    if not isinstance(label, str) or not label:
        raise DataError("'label' (the name of the label column) is required")
    if label not in df.columns:
        raise DataError(f"label column {label!r} is not in the data; available columns: {_names(available)}")
    features = params.get("features")
    if features is None:
        features = [c for c in available if c != label]
    elif not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise DataError("'features' must be a list of column names")
    unknown = [f for f in features if f not in df.columns]
    if unknown:
        raise DataError(f"unknown feature column(s) {_names(unknown)}; "
                        f"available columns: {_names(available)}")
    if label in features:
        raise DataError(f"the label column {label!r} cannot also be a feature")
    if len(set(features)) != len(features):
        raise DataError("'features' lists a column more than once")
    if not features:
        raise DataError("there are no feature columns to use")
    if not all(isinstance(f, str) for f in features):
        raise DataError("column names must be strings")
    duplicated = [c for c in features + [label] if list(df.columns).count(c) > 1]
    if duplicated:
        raise DataError(f"column(s) {_names(sorted(set(duplicated)))} appear more than once")
    task = params.get("task")
    if task is not None and task not in TASKS:
        raise DataError(f"unknown task {task!r}; expected one of {', '.join(TASKS)} (or omit it to infer)")
    dropna = params.get("dropna", True)
    if not isinstance(dropna, bool):
        raise DataError("'dropna' must be true or false")
    method = params.get("normalize", "standard")
    if method not in NORMALIZATIONS:
        raise DataError(f"unknown normalize {method!r}; expected one of {', '.join(NORMALIZATIONS)}")
    seed = params.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        raise DataError(f"'seed' must be an integer >= 0, got {seed!r}")
    max_categories = params.get("max_categories", 50)
    if not _is_int(max_categories) or max_categories < 1:
        raise DataError(f"'max_categories' must be an integer >= 1, got {max_categories!r}")
    return _Params(label, list(features), task, dropna, method, _read_split(params.get("split")),
                   int(seed), int(max_categories))


# ---------------------------------------------------------------- columns and label


def _numeric_feature(series: pd.Series, name: str) -> np.ndarray | None:
    """Float values (NaN = null) if the column is numeric, None if it is categorical; DataError on typos."""
    if series.dtype.kind in "bMm" or isinstance(series.dtype, pd.CategoricalDtype):
        return None
    values, bad = parse_numeric(series)
    parsed = int((~np.isnan(values)).sum())
    share = parsed / (parsed + int(bad.sum())) if parsed else 0.0
    if series.dtype.kind not in "iuf" and share < NUMERIC_SHARE - 1e-9:
        return None
    if bad.any():
        first = series.iloc[int(np.flatnonzero(bad)[0])]
        raise DataError(f"column {name!r}: {int(bad.sum())} values do not parse as finite numbers "
                        f"(first: {first!r})")
    return values


def _label_numbers(series: pd.Series) -> np.ndarray | None:
    """Float values of a numeric label, or None when the label is not numeric (strings, bools...)."""
    kind = series.dtype.kind
    if kind in "iuf":
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if kind == "O" and pd.api.types.infer_dtype(series, skipna=True) in (
            "integer", "floating", "mixed-integer-float", "decimal"):
        return parse_numeric(series)[0]
    return None


def _encode_label(series: pd.Series, task: str | None, name: str) -> tuple[str, list[Any] | None, np.ndarray]:
    """(task, label_classes, y) for a label column without nulls; y is int64 indices or float64 targets."""
    numbers = _label_numbers(series)
    if task is None:
        if numbers is None:
            task = "classification"
        else:
            distinct = np.unique(numbers)
            integral = bool(np.all(np.mod(distinct, 1) == 0))
            task = "classification" if integral and len(distinct) <= MAX_INFERRED_CLASSES else "regression"
    if task == "regression":
        values, bad = parse_numeric(series)
        bad |= np.isnan(values)  # nulls are gone already, so NaN here is an empty string or a typo
        if bad.any():
            first = series.iloc[int(np.flatnonzero(bad)[0])]
            raise DataError(f"label {name!r}: {int(bad.sum())} values are not finite numbers "
                            f"(first: {first!r}); regression needs a numeric label")
        return "regression", None, values
    if numbers is not None:
        if not np.isfinite(numbers).all():
            raise DataError(f"label {name!r} has infinite values")
        distinct = np.unique(numbers)
        integral = bool(np.all(np.mod(distinct, 1) == 0))
        classes: list[Any] = [int(v) if integral else float(v) for v in distinct]
        y = np.searchsorted(distinct, numbers)
    else:
        objects = series.astype(object).to_numpy()
        if series.dtype.kind == "b" or all(isinstance(v, bool | np.bool_) for v in objects):
            distinct_bools = np.unique(objects.astype(bool))  # False sorts before True
            classes = [bool(v) for v in distinct_bools]
            y = np.searchsorted(distinct_bools, objects.astype(bool))
        else:
            keys = category_keys(series)
            classes = sorted(set(keys))
            y = pd.Index(classes, dtype=object).get_indexer(keys)
    if len(classes) < 2:
        raise DataError(f"label {name!r} has only one class: {classes[0]!r}")
    if task == "binary" and len(classes) != 2:
        raise DataError(f"task 'binary' needs 2 classes but label {name!r} has {len(classes)}: "
                        f"{_names(classes, 10)}")
    if task == "classification":
        task = "binary" if len(classes) == 2 else "multiclass"
    return task, [json_scalar(c) for c in classes], y.astype(np.int64)


# ---------------------------------------------------------------- fitting


def _fit_scaling(x: np.ndarray, method: str) -> tuple[list[float] | None, list[float] | None]:
    """(offset, scale) fitted on the encoded train matrix; constant columns get scale 1."""
    if method in ("l2", "none"):
        return None, None
    x = x.astype(np.float64)
    constant = x.max(axis=0) == x.min(axis=0)
    if method == "standard":
        offset, scale = x.mean(axis=0), x.std(axis=0)
    else:
        offset, scale = x.min(axis=0), x.max(axis=0) - x.min(axis=0)
    scale[constant | (scale == 0)] = 1.0
    return [float(v) for v in offset], [float(v) for v in scale]


def fit_preprocess(df: pd.DataFrame, params: dict[str, Any]) -> Prepared:
    """Clean, encode, split and normalise a raw frame; statistics are fitted on the train split only."""
    p = _read_params(df, params)
    numbers: dict[str, np.ndarray] = {}
    keys: dict[str, np.ndarray] = {}
    for name in p.features:
        series = df[name]
        if series.isna().all():
            raise DataError(f"column {name!r} has no values (every row is empty)")
        values = _numeric_feature(series, name)
        if values is None:
            keys[name] = category_keys(series)
        else:
            numbers[name] = values
    keep = df[p.label].notna().to_numpy().copy()  # pandas may return a read-only view
    if p.dropna:
        for values in numbers.values():
            keep &= ~np.isnan(values)
        for column_keys in keys.values():
            keep &= ~pd.isna(column_keys)
    positions = np.flatnonzero(keep)
    if len(positions) == 0:
        detail = "in the label or a feature (dropna=true)" if p.dropna else f"in the label {p.label!r}"
        raise DataError(f"no rows left after dropping rows with missing values {detail}")
    task, classes, y = _encode_label(df[p.label].iloc[positions], p.task, p.label)
    for name, column_keys in keys.items():
        distinct = set(column_keys[positions]) - {None}
        if len(distinct) > p.max_categories:
            raise DataError(f"column {name!r} has {len(distinct)} distinct values; more than "
                            f"{p.max_categories} categories cannot be one-hot encoded — drop it with "
                            "'features' or encode it yourself")

    rows = split_rows(positions, y, classes is not None, p.split, p.seed)
    train = rows["train"]
    impute: dict[str, float] = {}
    if not p.dropna:
        for name, values in numbers.items():
            train_values = values[train]
            # A column empty throughout the train split has no median; 0 keeps the transform usable.
            has_values = bool((~np.isnan(train_values)).any())
            impute[name] = float(np.nanmedian(train_values)) if has_values else 0.0
    categorical: dict[str, list[str]] = {}
    features: list[str] = []
    for name in p.features:
        if name in numbers:
            features.append(name)
            continue
        train_keys = keys[name][train]
        categorical[name] = sorted({MISSING if k is None else k for k in train_keys})
        features.extend(f"{name}={category}" for category in categorical[name])
    clashes = sorted({f for f in features if features.count(f) > 1} | ({p.label} & set(features)))
    if clashes:
        raise DataError(f"encoded feature name(s) {_names(clashes)} clash; rename the columns")

    transform: dict[str, Any] = {
        "version": 1, "label": p.label, "task": task, "label_classes": classes,
        "columns": list(p.features), "numeric": [n for n in p.features if n in numbers],
        "categorical": categorical, "features": features, "impute": impute,
        "normalize": p.normalize, "offset": None, "scale": None,
    }
    offset, scale = _fit_scaling(encode(df.iloc[train], transform), p.normalize)
    transform["offset"], transform["scale"] = offset, scale

    y_at = np.zeros(len(df), dtype=np.int64 if classes is not None else np.float64)
    y_at[positions] = y
    splits: dict[str, pd.DataFrame] = {}
    for name, split_positions in rows.items():
        # The same code path as serving, so a saved transform reproduces these matrices exactly.
        frame = pd.DataFrame(transform_rows(df.iloc[split_positions], transform), columns=features)
        frame[p.label] = y_at[split_positions]
        splits[name] = frame
    source_rows = {name: split_positions.astype(np.int64) for name, split_positions in rows.items()}
    return Prepared(splits=splits, transform=transform, source_rows=source_rows)
