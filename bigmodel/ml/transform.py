"""Applying a fitted transform (the JSON dict from bigmodel.ml.data.fit_preprocess) to raw rows."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bigmodel.errors import DataError

MISSING = "__missing__"
NORMALIZATIONS = ("standard", "minmax", "l2", "none")
BLOCK_VALUES = 1 << 20  # values per float64 working block: 8 MiB whatever the matrix size


def _is_null(value: Any) -> bool:
    """True for None, NaN, NaT and pd.NA; False for anything else (including list-likes)."""
    if value is None:
        return True
    try:
        result = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return isinstance(result, bool | np.bool_) and bool(result)


def parse_numeric(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, NaN where null or bad; mask of non-null values that are not finite numbers)."""
    kind = series.dtype.kind
    if kind in "iuf":
        # A copy: pandas may hand out a read-only view, and callers fill nulls in place.
        values = np.array(series.to_numpy(dtype=np.float64, na_value=np.nan), copy=True)
        return values, np.isinf(values)
    if kind in "bMm":
        # Booleans and timestamps are not numbers even though numpy would cast them.
        null = series.isna().to_numpy()
        return np.full(len(series), np.nan), ~null
    objects = series.astype(object).to_numpy()
    null = np.fromiter((_is_null(v) or (isinstance(v, str) and not v.strip()) for v in objects),
                       dtype=bool, count=len(objects))
    is_bool = np.fromiter((isinstance(v, bool | np.bool_) for v in objects), dtype=bool, count=len(objects))
    candidates = np.where(null | is_bool, None, objects)
    try:
        values = np.array(pd.to_numeric(pd.Series(candidates, dtype=object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan), copy=True)
    except (TypeError, ValueError):
        values = np.full(len(objects), np.nan)
    bad = is_bool.copy()
    # Only values the fast path could not read get the slow look; "nan" strings count as nulls.
    for i in np.flatnonzero(np.isnan(values) & ~null & ~is_bool):
        try:
            parsed = float(objects[i])
        except (TypeError, ValueError):
            bad[i] = True
            continue
        values[i] = parsed
    bad |= np.isinf(values)
    values[bad] = np.nan
    return values, bad


def _category_key(value: Any) -> str | None:
    """The string a raw value is compared by as a category (None for a null)."""
    if _is_null(value):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        # 3.0 and 3 are the same category whichever way the value arrived (CSV, JSON).
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return value if isinstance(value, str) else str(value)


def category_keys(series: pd.Series) -> np.ndarray:
    """Object array of category keys for a raw column; None where the value is null."""
    kind = series.dtype.kind
    if kind == "b":
        return np.where(series.to_numpy(), "true", "false").astype(object)
    if kind in "iu":
        return series.to_numpy().astype(str).astype(object)
    values = series.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        # Text columns (the common case) need no per-value look: the value is its own key.
        keys = np.array(values, dtype=object, copy=True)
        keys[pd.isna(keys)] = None
        return keys
    return np.array([_category_key(v) for v in values], dtype=object)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """One column by name, refusing duplicated names that would make it ambiguous."""
    column = df[name]
    if isinstance(column, pd.DataFrame):
        raise DataError(f"column {name!r} appears more than once")
    return column


MISSING_MODES = ("fail", "null", "impute")  # what a predict job does with a row the model cannot take
# Why a value is unusable: (the error `fail` raises at its first row, the reason `null` gives each row).
UNUSABLE = {
    "not_a_number": ("column {name}: value {value} (row {row}) does not parse as a finite number",
                     "column {name}: not a finite number"),
    "missing": ("column {name} has missing values (row {row}) and the model was trained with dropna=true",
                "column {name}: missing value"),
    "missing_category": ("column {name} has missing values (row {row}) and the model saw none in training",
                         "column {name}: missing value"),
    "unseen": ("column {name}: category {value} (row {row}) was never seen in training",
               "column {name}: category never seen in training"),
}


@dataclass(frozen=True)
class Encoded:
    """Encoded rows, and per row why it cannot be predicted (None where it can)."""

    x: np.ndarray  # float32 (rows, features); a row with a reason holds zeros where it was unusable
    reasons: np.ndarray | None  # object array of str | None; None when every row is usable

    @property
    def bad(self) -> np.ndarray:
        """Mask of the rows that get a null prediction."""
        if self.reasons is None:
            return np.zeros(len(self.x), dtype=bool)
        return pd.notna(self.reasons)  # type: ignore[no-any-return]


class _Unusable:
    """The rows found unusable while columns are encoded: `fail` raises at the first, else they are noted."""

    def __init__(self, rows: int, missing: str, first_row: int) -> None:
        if missing not in MISSING_MODES:
            raise DataError(f"unknown missing mode {missing!r}; expected one of {', '.join(MISSING_MODES)}")
        self.missing = missing
        self.first_row = first_row  # row numbers in messages count from the start of the dataset
        self.reasons: np.ndarray | None = None
        self.rows = rows

    def can_fill(self, fill: dict[str, Any], name: str) -> bool:
        """Whether unusable values of a column are filled from the train statistics (missing=impute)."""
        return self.missing == "impute" and name in fill

    def found(self, series: pd.Series, name: str, masks: dict[str, np.ndarray], filled: bool) -> None:
        """Rows of each mask (by kind, see UNUSABLE) cannot be used as they are: raise at the column's first
        such row (fail), or give them the reason unless they are filled."""
        found = {kind: mask for kind, mask in masks.items() if mask.any()}
        if not found:
            return
        if self.missing == "fail":
            row, kind = min((int(np.argmax(mask)), kind) for kind, mask in found.items())
            raise DataError(UNUSABLE[kind][0].format(name=repr(name), value=repr(series.iloc[row]),
                                                     row=self.first_row + row))
        if filled:
            return
        if self.reasons is None:
            self.reasons = np.full(self.rows, None, dtype=object)
        for kind, mask in found.items():
            self.reasons[mask & pd.isna(self.reasons)] = UNUSABLE[kind][1].format(name=repr(name))


def encode(df: pd.DataFrame, transform: dict[str, Any]) -> np.ndarray:
    """Raw rows -> encoded float32 matrix (imputed, one-hot) in transform["features"] order, unnormalised.

    What online inference takes: a missing number the transform does not impute is an error, and an
    unseen category encodes as all zeros.
    """
    return _encode(df, transform, "fail", 0, unseen_fails=False).x


def encode_rows(df: pd.DataFrame, transform: dict[str, Any], missing: str = "null",
                first_row: int = 0) -> Encoded:
    """The predict job's encoding: a row with a value the transform cannot take (a missing or unparsable
    number it does not impute, an unseen category) fails the job (`fail`), gets a reason (`null`), or is
    filled from the transform's train statistics (`impute`). first_row numbers the rows in errors."""
    return _encode(df, transform, missing, first_row, unseen_fails=True)


def _encode(df: pd.DataFrame, transform: dict[str, Any], missing: str, first_row: int,
            unseen_fails: bool) -> Encoded:
    columns: list[str] = transform["columns"]
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise DataError(f"missing column(s) {', '.join(map(repr, absent))}; the model needs "
                        f"{', '.join(map(repr, columns))}")
    numeric = set(transform["numeric"])
    impute: dict[str, float] = transform.get("impute") or {}
    fill: dict[str, Any] = transform.get("fill") or {}
    unusable = _Unusable(len(df), missing, first_row)
    out = np.zeros((len(df), len(transform["features"])), dtype=np.float32)
    pos = 0
    for name in columns:
        series = _column(df, name)
        if name in numeric:
            values, bad = parse_numeric(series)
            null = np.isnan(values) & ~bad
            if name in impute:
                values[null] = impute[name]
                null[:] = False
            filled = unusable.can_fill(fill, name)
            unusable.found(series, name, {"not_a_number": bad, "missing": null}, filled)
            unusable_values = bad | null
            if unusable_values.any():
                values[unusable_values] = fill[name] if filled else 0.0
            out[:, pos] = values
            pos += 1
        else:
            categories: list[str] = transform["categorical"][name]
            keys = category_keys(series)
            null = pd.isna(keys)
            keys[null] = MISSING
            # Unseen categories get -1 and so stay all zeros (online; the predict job notes them).
            codes = pd.Index(categories, dtype=object).get_indexer(keys)
            if unseen_fails:
                unseen = codes < 0
                filled = unusable.can_fill(fill, name) and fill[name] in categories
                unusable.found(series, name, {"missing_category": unseen & null, "unseen": unseen & ~null},
                               filled)
                if filled:
                    codes[unseen] = categories.index(fill[name])
            rows = np.flatnonzero(codes >= 0)
            out[rows, pos + codes[rows]] = 1.0
            pos += len(categories)
    if pos != out.shape[1]:
        raise DataError("the transform is inconsistent: its columns do not produce its feature list")
    return Encoded(out, unusable.reasons)


def _blocks(x: np.ndarray) -> Iterator[tuple[slice, slice]]:
    """(rows, columns) slices that cover x in pieces of about BLOCK_VALUES, along its contiguous axis."""
    rows, cols = x.shape
    if x.flags.f_contiguous and not x.flags.c_contiguous:
        step = max(1, BLOCK_VALUES // max(rows, 1))
        for start in range(0, cols, step):
            yield slice(None), slice(start, start + step)
    else:
        step = max(1, BLOCK_VALUES // max(cols, 1))
        for start in range(0, rows, step):
            yield slice(start, start + step), slice(None)


def normalize_inplace(x: np.ndarray, transform: dict[str, Any]) -> None:
    """Apply the fitted normalisation to a float32 encoded matrix in place.

    The arithmetic is float64 a block at a time (never a float64 copy of the whole matrix), so the
    result is the float32 rounding of the exact value whatever the matrix's size or memory order.
    """
    width = len(transform["features"])
    if x.ndim != 2 or x.shape[1] != width:
        raise DataError(f"expected an encoded matrix with {width} columns, got shape {x.shape}")
    method = transform["normalize"]
    if method == "none":
        return
    if method == "l2":
        norms = np.zeros(len(x))
        for rows, cols in _blocks(x):
            norms[rows] += np.square(x[rows, cols], dtype=np.float64).sum(axis=1)
        norms = np.sqrt(norms)
        norms[norms == 0] = 1.0  # an all-zero row stays zeros
        for rows, cols in _blocks(x):
            x[rows, cols] = x[rows, cols] / norms[rows, None]
        return
    if method in ("standard", "minmax"):
        offset = np.asarray(transform["offset"], dtype=np.float64)
        scale = np.asarray(transform["scale"], dtype=np.float64)
        for rows, cols in _blocks(x):
            x[rows, cols] = (x[rows, cols].astype(np.float64) - offset[cols]) / scale[cols]
        return
    raise DataError(f"unknown normalisation {method!r}; expected one of {', '.join(NORMALIZATIONS)}")


def normalize(x: np.ndarray, transform: dict[str, Any]) -> np.ndarray:
    """Apply the fitted normalisation to an encoded matrix; returns a new float32 matrix."""
    out = np.array(x, dtype=np.float32, copy=True)
    if out.ndim != 2:
        raise DataError(f"expected an encoded matrix with {len(transform['features'])} columns, "
                        f"got shape {out.shape}")
    normalize_inplace(out, transform)
    return out


def transform_rows(df: pd.DataFrame, transform: dict[str, Any]) -> np.ndarray:
    """encode then normalize: exactly what fit_preprocess produced for the same raw rows."""
    x = encode(df, transform)
    normalize_inplace(x, transform)
    return x


def rows_to_frame(instances: list[Any], transform: dict[str, Any]) -> pd.DataFrame:
    """Turn API instances (lists in transform["columns"] order, or dicts keyed by column) into a raw frame."""
    columns: list[str] = transform["columns"]
    if not isinstance(instances, list) or not instances:
        raise DataError("'instances' must be a non-empty list of rows")
    if all(isinstance(row, list | tuple) for row in instances):
        for i, row in enumerate(instances):
            if len(row) != len(columns):
                raise DataError(f"instance {i} has {len(row)} values; expected {len(columns)} "
                                f"({', '.join(columns)})")
        data = {name: [row[j] for row in instances] for j, name in enumerate(columns)}
    elif all(isinstance(row, dict) for row in instances):
        for i, row in enumerate(instances):
            missing = [c for c in columns if c not in row]
            if missing:
                raise DataError(f"instance {i} is missing column(s) {', '.join(map(repr, missing))}")
        data = {name: [row[name] for row in instances] for name in columns}
    else:
        raise DataError("instances must be all lists (values in column order) or all objects "
                        "(keyed by column name), not a mix or other values")
    # Object columns keep each value as sent; encode does the parsing and reports bad values.
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in data.items()},
                        columns=columns)


def split_xy(frame: pd.DataFrame, transform: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """A processed split frame -> (X float32, y); y is int64 indices or float32 targets, None if absent."""
    features: list[str] = transform["features"]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataError(f"the processed data lacks feature column(s) {', '.join(map(repr, missing[:10]))}")
    x = frame[features].to_numpy(dtype=np.float32)
    label = transform["label"]
    if label not in frame.columns:
        return x, None
    dtype = np.float32 if transform["task"] == "regression" else np.int64
    return x, frame[label].to_numpy(dtype=dtype)


def decode_labels(indices: np.ndarray, transform: dict[str, Any]) -> list[Any]:
    """Class indices -> the original label values (regression targets come back as plain floats)."""
    values = np.asarray(indices).ravel()
    classes = transform.get("label_classes")
    if classes is None:
        return [float(v) for v in values]
    out: list[Any] = []
    for v in values:
        if isinstance(v, float | np.floating) and not float(v).is_integer():
            raise DataError(f"class index {v!r} is not an integer")
        i = int(v)
        if not 0 <= i < len(classes):
            raise DataError(f"class index {i} is out of range for {len(classes)} classes")
        out.append(classes[i])
    return out


def json_scalar(value: Any) -> Any:
    """A numpy or Python scalar as a plain JSON-serialisable Python value."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if not math.isnan(value) else None
    return value if isinstance(value, str) else str(value)
