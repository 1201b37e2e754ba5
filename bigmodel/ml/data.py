"""The data layer: fit cleaning, encoding, splitting and normalisation, column by column.

Preprocessing reads one raw column at a time (a frame's, or a stored Parquet's) and writes the
encoded, normalised features straight into one float32 matrix whose rows are grouped by split, so
memory holds that matrix and one column, never float64 copies of the whole table.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from bigmodel.errors import DataError
from bigmodel.ml.columns import Categories, Columns, FrameColumns
from bigmodel.ml.splitting import SPLITS, split_rows
from bigmodel.ml.tables import describe_columns, read_table
from bigmodel.ml.transform import (
    BLOCK_VALUES,
    MISSING,
    NORMALIZATIONS,
    category_keys,
    decode_labels,
    encode,
    json_scalar,
    normalize,
    normalize_inplace,
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


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Prepared:
    """The result of fitting preprocessing: the features of every split in one matrix, and the transform."""

    x: np.ndarray  # float32 (rows, features), column-major, rows grouped by split in SPLITS order
    y: np.ndarray  # int64 class indices, or float64 regression targets
    bounds: dict[str, tuple[int, int]]  # split -> its [start, stop) rows in x and y
    transform: dict[str, Any]
    source_rows: dict[str, np.ndarray]  # positions (iloc) in the input of each split's rows

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels) of one split: views, not copies."""
        start, stop = self.bounds[name]
        return self.x[start:stop], self.y[start:stop]

    @cached_property
    def splits(self) -> dict[str, pd.DataFrame]:
        """Each split as a frame of its features and label (the shape a processed dataset is read as)."""
        out: dict[str, pd.DataFrame] = {}
        for name in self.bounds:
            x, y = self.split(name)
            frame = pd.DataFrame(x, columns=self.transform["features"], copy=False)
            frame[self.transform["label"]] = y
            out[name] = frame
        return out


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


def _read_params(available: list[Any], params: dict[str, Any]) -> _Params:
    """Check params against the table's column names and fill in defaults."""
    if not isinstance(params, dict):
        raise DataError("preprocessing parameters must be an object")
    known = set(available)
    label = params.get("label")
    if not isinstance(label, str) or not label:
        raise DataError("'label' (the name of the label column) is required")
    if label not in known:
        raise DataError(f"label column {label!r} is not in the data; available columns: {_names(available)}")
    features = params.get("features")
    if features is None:
        features = [c for c in available if c != label]
    elif not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise DataError("'features' must be a list of column names")
    unknown = [f for f in features if f not in known]
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
    counts = Counter(available)
    duplicated = [c for c in features + [label] if counts[c] > 1]
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


def fit_scaling(x: np.ndarray, method: str) -> tuple[list[float] | None, list[float] | None]:
    """(offset, scale) fitted on the encoded train matrix; constant columns get scale 1.

    Statistics are float64 over float32 values, a block of columns at a time: exact to float64
    rounding, with a working copy of at most BLOCK_VALUES values.
    """
    if method in ("l2", "none"):
        return None, None
    width = x.shape[1]
    offset, scale = np.zeros(width), np.ones(width)
    step = max(1, BLOCK_VALUES // max(len(x), 1))
    for start in range(0, width, step):
        block = x[:, start:start + step].astype(np.float64)
        low, high = block.min(axis=0), block.max(axis=0)
        if method == "standard":
            off, sc = block.mean(axis=0), block.std(axis=0)
        else:
            off, sc = low, high - low
        sc[(high == low) | (sc == 0)] = 1.0
        offset[start:start + step], scale[start:start + step] = off, sc
    return [float(v) for v in offset], [float(v) for v in scale]


@dataclass(frozen=True)
class _Layout:
    """Where rows go: the usable source rows, each split's positions, and the output order."""

    rows: dict[str, np.ndarray]  # split -> source positions, in output order
    order: np.ndarray  # source position of each output row (the splits one after another)
    bounds: dict[str, tuple[int, int]]

    @classmethod
    def of(cls, rows: dict[str, np.ndarray]) -> _Layout:
        order = np.concatenate([rows[s] for s in rows]).astype(np.int64)
        stops = np.cumsum([len(rows[s]) for s in rows])
        bounds = {s: (int(stop - len(rows[s])), int(stop)) for s, stop in zip(rows, stops, strict=True)}
        return cls(rows, order, bounds)

    @property
    def train(self) -> np.ndarray:
        return self.rows["train"]


def _inspect(columns: Columns, p: _Params) -> tuple[dict[str, Categories], np.ndarray]:
    """First pass, one column at a time: which features are categorical, and which rows are usable."""
    categorical: dict[str, Categories] = {}
    keep = columns.series(p.label).notna().to_numpy().copy()  # pandas may hand out a read-only view
    for name in p.features:
        series = columns.series(name)
        if series.isna().all():
            raise DataError(f"column {name!r} has no values (every row is empty)")
        values = _numeric_feature(series, name)
        if values is None:
            categorical[name] = Categories.of(series)
            null = categorical[name].codes < 0
        else:
            null = np.isnan(values)
        if p.dropna:
            keep &= ~null
    return categorical, keep


def _check_categories(categorical: dict[str, Categories], kept: np.ndarray, limit: int) -> None:
    """Refuse a column with more distinct values in the usable rows than can be one-hot encoded."""
    for name, column in categorical.items():
        distinct = len(column.present(kept)[0])
        if distinct > limit:
            raise DataError(f"column {name!r} has {distinct} distinct values; more than "
                            f"{limit} categories cannot be one-hot encoded — drop it with "
                            "'features' or encode it yourself")


def _categories(column: Categories, train: np.ndarray) -> list[str]:
    """The categories of a column: the keys its train rows hold, with MISSING if they hold nulls."""
    keys, has_null = column.present(train)
    return sorted([str(k) for k in keys] + ([MISSING] if has_null else []))


def _encode_columns(columns: Columns, p: _Params, categorical: dict[str, Categories],
                    categories: dict[str, list[str]], layout: _Layout
                    ) -> tuple[np.ndarray, dict[str, float], dict[str, Any]]:
    """Second pass: each feature column encoded (imputed, one-hot) into the float32 matrix, split by split.

    Also returns (impute, fill): the train medians filled in silently (dropna=false), and what a predict
    job with missing=impute fills an unusable value with (the train median, or most frequent category).
    """
    width = sum(len(categories[n]) if n in categories else 1 for n in p.features)
    x = np.zeros((len(layout.order), width), dtype=np.float32, order="F")
    n_train = len(layout.train)
    impute: dict[str, float] = {}
    fill: dict[str, Any] = {}
    pos = 0
    for name in p.features:
        if name in categorical:
            lookup = categorical[name].positions(categories[name], MISSING)
            index = lookup[categorical[name].codes[layout.order]]
            hit = np.flatnonzero(index >= 0)  # unseen categories stay all zeros
            x[hit, pos + index[hit]] = 1.0
            counts = np.bincount(index[:n_train][index[:n_train] >= 0], minlength=len(categories[name]))
            fill[name] = categories[name][int(np.argmax(counts))]
            pos += len(categories[name])
            continue
        values = _numeric_feature(columns.series(name), name)
        if values is None:  # the first pass found it numeric: only a changed source could do this
            raise DataError(f"column {name!r} changed while it was being read")
        column = values[layout.order]
        if not p.dropna:
            train = column[:n_train]
            # A column empty throughout the train split has no median; 0 keeps the transform usable.
            has_values = bool((~np.isnan(train)).any())
            impute[name] = float(np.nanmedian(train)) if has_values else 0.0
            column[np.isnan(column)] = impute[name]
        # With dropna=true no train row is empty; with false the column is imputed already.
        fill[name] = impute.get(name, float(np.median(column[:n_train])) if n_train else 0.0)
        x[:, pos] = column
        pos += 1
    return x, impute, fill


def fit_preprocess(table: pd.DataFrame | Columns, params: dict[str, Any]) -> Prepared:
    """Clean, encode, split and normalise a raw table; statistics are fitted on the train split only."""
    columns = FrameColumns(table) if isinstance(table, pd.DataFrame) else table
    p = _read_params(columns.names, params)
    categorical, keep = _inspect(columns, p)
    positions = np.flatnonzero(keep)
    if len(positions) == 0:
        detail = "in the label or a feature (dropna=true)" if p.dropna else f"in the label {p.label!r}"
        raise DataError(f"no rows left after dropping rows with missing values {detail}")
    task, classes, y = _encode_label(columns.series(p.label).iloc[positions], p.task, p.label)
    _check_categories(categorical, positions, p.max_categories)
    # Rows keep their source order within a split: reading columns in order is fast, and training
    # shuffles with its own seed anyway.
    split = split_rows(positions, y, classes is not None, p.split, p.seed)
    layout = _Layout.of({name: np.sort(rows) for name, rows in split.items()})
    categories = {name: _categories(column, layout.train) for name, column in categorical.items()}
    features = [feature for name in p.features
                for feature in ([f"{name}={c}" for c in categories[name]] if name in categories else [name])]
    counts = Counter(features)
    clashes = sorted({f for f, n in counts.items() if n > 1} | ({p.label} & set(features)))
    if clashes:
        raise DataError(f"encoded feature name(s) {_names(clashes)} clash; rename the columns")

    x, impute, fill = _encode_columns(columns, p, categorical, categories, layout)
    transform: dict[str, Any] = {
        "version": 1, "label": p.label, "task": task, "label_classes": classes,
        "columns": list(p.features), "numeric": [n for n in p.features if n not in categorical],
        "categorical": categories, "features": features, "impute": impute, "fill": fill,
        "normalize": p.normalize, "offset": None, "scale": None,
    }
    transform["offset"], transform["scale"] = fit_scaling(x[: len(layout.train)], p.normalize)
    # The same normalisation code as serving, so a saved transform reproduces these values exactly.
    normalize_inplace(x, transform)
    y_at = np.zeros(columns.rows, dtype=np.int64 if classes is not None else np.float64)
    y_at[positions] = y
    return Prepared(x=x, y=y_at[layout.order], bounds=layout.bounds, transform=transform,
                    source_rows={name: rows.astype(np.int64) for name, rows in layout.rows.items()})
